"""Run litgpt's command line, recording the target rows of every training micro-batch.

``python litgpt_traced.py TRACE pretrain ...`` is ``litgpt pretrain ...`` (litgpt's own entry
point and argument parsing), except that each row litgpt trains on is appended to the file
TRACE as one JSON list of its target token ids (``row[1:L+1]``): what the test compares with
the plan's samples. Validation runs under ``torch.no_grad`` and is not recorded.
"""

from __future__ import annotations

import json
import sys

import litgpt.pretrain
import torch
from litgpt.__main__ import main

_loss = litgpt.pretrain.chunked_cross_entropy


def _recording_loss(logits, targets, *args, **kwargs):
    if torch.is_grad_enabled() and targets.device.type != "meta":  # not the FLOPs probe
        with open(TRACE, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in targets.tolist())
    return _loss(logits, targets, *args, **kwargs)


if __name__ == "__main__":
    TRACE = sys.argv.pop(1)
    litgpt.pretrain.chunked_cross_entropy = _recording_loss
    sys.argv[0] = "litgpt"
    main()
