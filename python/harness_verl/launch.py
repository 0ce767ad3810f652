"""Start verl's PPO trainer for one harness run (what `harness run --dry-run` prints).

    python -m harness_verl.launch --run-dir DIR --data-source math_dapo --data train=F name=F ... \
        -- <hydra overrides>

1. Converts the run's data files into verl's schema under DIR/verl_data/ (`data.py`).
2. Makes every verl process load the plugins: `VERL_USE_EXTERNAL_MODULES=harness_verl` (verl
   imports such modules when it is imported, in the driver and in every Ray worker, which inherit
   this environment) and this package's directory on PYTHONPATH.
3. Runs `verl.trainer.main_ppo` with the overrides (Hydra), in this process.

verl's file logger writes DIR/verl_metrics.jsonl; `harness run --only <run>` (which starts this
launcher for a `backend: verl` run) then reads it into DIR/metrics.jsonl / eval.jsonl and their
Parquet copies (`harness::backend::verl_log::ingest`). Needs verl 0.9.1 with its GPU dependencies
(vLLM or SGLang, Ray, pandas).
"""
import argparse
import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        cut = argv.index("--")
        ours, overrides = argv[:cut], argv[cut + 1:]
    else:
        ours, overrides = argv, []
    p = argparse.ArgumentParser(prog="harness_verl.launch")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--data-source", default="math_dapo")
    p.add_argument("--data", nargs="*", default=[], help="name=path pairs")
    a = p.parse_args(ours)
    from .data import convert

    convert(dict(x.split("=", 1) for x in a.data), os.path.join(a.run_dir, "verl_data"), a.data_source)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = here + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    os.environ.setdefault("VERL_USE_EXTERNAL_MODULES", "harness_verl")
    os.environ.setdefault("VERL_FILE_LOGGER_PATH", os.path.join(a.run_dir, "verl_metrics.jsonl"))
    import harness_verl  # noqa: F401  (registers the losses in the driver too)
    from verl.trainer import main_ppo

    sys.argv = ["verl.trainer.main_ppo", *overrides]
    main_ppo.main()


if __name__ == "__main__":
    main()
