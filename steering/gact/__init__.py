"""G-ACT (gradient-refined adaptive activation steering) for the programming language of generated code, with its
two baselines (static neuron attribution, ACT) and a language identifier. METHODS.md §2; issue 6.

>>> gact, _, _ = fit_gact(lm, train_prompts, GactConfig(k=3, target="cpp"))   # doctest: +SKIP
>>> with gact.steer(lm, scale=1.0) as session:                                  # doctest: +SKIP
...     lm.generate(["Implement a Runge-Kutta integrator."])
"""

from steering.gact.act import Act, ActConfig, fit_act_from_acts, per_layer_probe_accuracy
from steering.gact.activations import differences, last_token_acts
from steering.gact.gact import Gact, GactConfig, GactSession, fit_gact, fit_gact_from_acts
from steering.gact.kmeans import kmeans
from steering.gact.langid import classify, identify, is_valid_code
from steering.gact.probes import LayerProbes, fit_probes
from steering.gact.prompts import LANGUAGES, PROMPTS, defaults, splits, variant, variants
from steering.gact.static_neuron import Neuron, StaticNeuron, top_neurons

__all__ = ["Act", "ActConfig", "Gact", "GactConfig", "GactSession", "LANGUAGES", "LayerProbes", "Neuron", "PROMPTS",
           "StaticNeuron", "classify", "defaults", "differences", "fit_act_from_acts", "fit_gact", "fit_gact_from_acts",
           "fit_probes", "identify", "is_valid_code", "kmeans", "last_token_acts", "per_layer_probe_accuracy",
           "splits", "top_neurons", "variant", "variants"]
