"""Early exit: classifier heads part-way through a model, calibrated integer exit rules.

* :mod:`sdk.exits.rules` — the integer rules (margin, entropy via LUTs, patience, gate), the
  NumPy specification; :mod:`sdk.exits.fast` — their Numba twins.
* :mod:`sdk.exits.plan` — :class:`ExitPlan` / :class:`ExitSpec` (``manifest["exits"]``) and
  :func:`split_stages` (one integer graph -> stage entry graphs over the same weights).
* :mod:`sdk.exits.calibrate` — :func:`add_exits`: sweep the thresholds on held-out labelled
  data and keep the operating point that saves the most MACs within the allowed drop.
  With ``criterion="miou"`` (segmentation, gate rule) the labels are class maps and the
  drop is in mIoU points.
* :class:`sdk.runtime.early_exit.EarlyExitSession` runs the stages and stops at the first
  exit that fires.
* :mod:`sdk.exits.temporal` — keyword spotting exits over time; :mod:`sdk.exits.lm` —
  per-token exits in a KV-cached decoder (:class:`~sdk.exits.lm.LMExitSession`).
"""

from sdk.exits.calibrate import OperatingPoint, add_exits, check_drop, exit_scores, pareto
from sdk.exits.plan import ExitPlan, ExitSpec, split_stages
from sdk.exits.rules import (
                             RULES,
                             EntropyTable,
                             argmax_int,
                             entropy_scores,
                             first_exit,
                             margin_scores,
                             patience_scores,
)

__all__ = ["RULES", "EntropyTable", "ExitPlan", "ExitSpec", "OperatingPoint", "add_exits",
           "argmax_int", "check_drop", "entropy_scores", "exit_scores", "first_exit",
           "margin_scores", "pareto", "patience_scores", "split_stages"]
