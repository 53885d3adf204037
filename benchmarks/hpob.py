"""Run the generative HPO method on HPO-B (releaunifreiburg/HPO-B) when you have its data.

HPO-B's meta-dataset and surrogates are downloaded from a university server (not reachable from our
CI); with them on disk and the HPO-B repository checked out:

    python benchmarks/hpob.py --hpob-repo PATH/TO/HPO-B --data PATH/TO/hpob-data \\
        --surrogates PATH/TO/saved-surrogates --space 5971

runs the protocol generative HPO was first proposed with (meta-dataset v3-test, search space 5971,
its six datasets, seeds test0..test4, 50 trials, continuous setting) and writes the regret curves to benchmarks/results/hpob_<space>.json,
which HPO-B's own plotting code reads next to its baselines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffsearch.searchers.hparams.generative import GenerativeHPO


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hpob-repo", required=True, help="checkout of HPO-B (holds hpob_handler.py)")
    parser.add_argument("--data", required=True, help="HPO-B's hpob-data folder")
    parser.add_argument("--surrogates", required=True, help="HPO-B's saved-surrogates folder")
    parser.add_argument("--space", default="5971")
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args(argv)
    sys.path.insert(0, args.hpob_repo)
    try:
        from hpob_handler import HPOBHandler
    except ImportError as exc:
        parser.error(f"cannot import hpob_handler from {args.hpob_repo}: {exc}")
    handler = HPOBHandler(root_dir=args.data, mode="v3-test", surrogates_dir=args.surrogates)
    results: dict = {args.space: {}}
    for dataset in handler.get_datasets(args.space):
        results[args.space][dataset] = {}
        for seed in handler.get_seeds():
            method = GenerativeHPO(seed=0)
            curve = handler.evaluate_continuous(
                method, search_space_id=args.space, dataset_id=dataset, seed=seed, n_trials=args.trials
            )
            results[args.space][dataset][seed] = [float(v) for v in curve]
            print(f"{dataset} {seed}: final {curve[-1]:.4f}", file=sys.stderr, flush=True)
    out = Path(__file__).parent / "results" / f"hpob_{args.space}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
