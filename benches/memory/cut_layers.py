"""Cut a Hugging Face Qwen3 directory to its first N decoder layers (same shapes otherwise).

    python cut_layers.py SRC DST N

Needs torch and safetensors (the project venv has both). Used by benches/memory/measure.sh to make
a qwen3-0.6b-shaped model whose full fine-tuning fits the memory of a shared CPU machine.
"""
import json
import os
import re
import sys

from safetensors.torch import load_file, save_file


def main(src, dst, n):
    n = int(n)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["num_hidden_layers"] = n
    if isinstance(cfg.get("layer_types"), list):
        cfg["layer_types"] = cfg["layer_types"][:n]
    os.makedirs(dst, exist_ok=True)
    files = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
    kept = {}
    for f in files:
        for name, t in load_file(os.path.join(src, f)).items():
            m = re.match(r"model\.layers\.(\d+)\.", name)
            if m is None or int(m.group(1)) < n:
                kept[name] = t
    save_file(kept, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
    print(f"wrote {dst}: {n} layers, {sum(t.numel() for t in kept.values()) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main(*sys.argv[1:])
