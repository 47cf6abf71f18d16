"""Pause tokens for long contexts: insertion, attention analysis, needle-in-a-haystack and pause-tuning (METHODS §5).

>>> text = insert_pauses(long_text, lm.tokenizer, PauseConfig(every_n_tokens=400))   # doctest: +SKIP
>>> grid = run_grid(lm, haystack_texts, [512, 1024], depths_grid(10), pause=PauseConfig())  # doctest: +SKIP
"""

from probes.pause.attention import attention_mass, case_attention
from probes.pause.insert import (ABSORB_PHRASE, DEFAULT_MARKER, PauseConfig, insert_pauses, marker_positions,
                                 with_pause_token)
from probes.pause.niah import NeedleTemplate, NiahCase, depths_grid, judge, make_case, run_grid, score_case
from probes.pause.tune import TuneConfig, load_pause_lora, pause_tune, synthetic_examples

__all__ = ["ABSORB_PHRASE", "DEFAULT_MARKER", "NeedleTemplate", "NiahCase", "PauseConfig", "TuneConfig",
           "attention_mass", "case_attention", "depths_grid", "insert_pauses", "judge", "load_pause_lora",
           "make_case", "marker_positions", "pause_tune", "run_grid", "score_case", "synthetic_examples",
           "with_pause_token"]
