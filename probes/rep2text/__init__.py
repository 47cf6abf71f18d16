"""Rep2Text: invert a model's last-token hidden state back into the text it read.

A small adapter (two-layer MLP with a gated skip) maps the target model's last-token residual state at one layer to
``k`` soft tokens in a decoder's embedding space; the decoder (frozen, or LoRA-tuned via peft) reads them inside a
"reconstruct the input" prompt and is trained with teacher-forced cross-entropy to write the original span.

>>> cfg = Rep2TextConfig(layer=12)                                         # doctest: +SKIP
>>> inverter = train(target_lm, decoder_lm, spans, cfg, out_dir="runs/r2t")  # doctest: +SKIP
>>> inverter.invert(["The cat sat on the mat."])                           # doctest: +SKIP
"""

from probes.rep2text.adapter import Rep2TextAdapter
from probes.rep2text.config import Rep2TextConfig
from probes.rep2text.data import last_token_states, load_spans
from probes.rep2text.evaluate import evaluate, logit_lens_readout
from probes.rep2text.inverter import Inverter
from probes.rep2text.metrics import bag_f1, bleu, rouge1, rouge_l, token_recovery
from probes.rep2text.train import train

__all__ = ["Inverter", "Rep2TextAdapter", "Rep2TextConfig", "bag_f1", "bleu", "evaluate", "last_token_states",
           "load_spans", "logit_lens_readout", "rouge1", "rouge_l", "token_recovery", "train"]
