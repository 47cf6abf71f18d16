"""Refusal direction (Arditi et al. 2024, "Refusal in language models is mediated by a single direction"):
candidates by difference of means, selection by the paper's rules, ablation / addition / weight orthogonalisation,
a refusal judge, and an evaluation harness. The WAS controller lives in ``steering.controller``.
"""

from steering.refusal.directions import (COMPLIANCE_PHRASES, REFUSAL_PHRASES, Candidates, candidate_directions,
                                         load_direction, phrase_directions, prompt_activations)
from steering.refusal.evaluate import Condition, Generations, evaluate, generate
from steering.refusal.interventions import (ablation, addition, apply_delta, orthogonalize, rank1_delta,
                                            save_delta)
from steering.refusal.judge import REFUSAL_SUBSTRINGS, RefusalJudge, substring_refusal
from steering.refusal.select import SelectConfig, Selection, select_direction

__all__ = ["COMPLIANCE_PHRASES", "Candidates", "Condition", "Generations", "REFUSAL_PHRASES", "REFUSAL_SUBSTRINGS",
           "RefusalJudge", "SelectConfig", "Selection", "ablation", "addition", "apply_delta", "candidate_directions",
           "evaluate", "generate", "load_direction", "orthogonalize", "phrase_directions", "prompt_activations",
           "rank1_delta", "save_delta", "select_direction", "substring_refusal"]
