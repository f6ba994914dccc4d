"""The ``vlrl`` command line.

    vlrl data synth --task shapes --n 200 --out data/shapes     synthetic data (JSONL + PNG)
    vlrl align --config configs/tiny/align.yaml [k=v ...]       image-description alignment (freezing schedule)
    vlrl warmup --config configs/tiny/warmup.yaml [k=v ...]     supervised (long-CoT warm-up) training
    vlrl rl --config configs/tiny/rl.yaml [k=v ...]             RL (k1.5 mirror descent, partial rollouts)
    vlrl warmup-data --synth shapes --n 1000 --out D            verified long-CoT traces (or --model: rejection sampling)
    vlrl eval --model DIR --data SRC [--n 8 --temperature 1]    pass@k / maj@k per modality, difficulty
    vlrl infer --model DIR --image x.png --question "..."       answer a question (streamed; DIR may be a LLaVA checkpoint)
    vlrl export DIR --out HF_DIR                                 write a model as a transformers LLaVA directory
    vlrl encoders list                                          registered encoders (plugins included)
    vlrl projectors list                                        registered projectors
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from vlrl.stages import STAGES

EPILOG = ("Config overrides are key=value pairs after the options, e.g. optim.lr=1e-4 steps=50. "
          "Several processes or GPUs: accelerate launch --config_file configs/accelerate/ddp.yaml (or fsdp.yaml: "
          "parameters, gradients and Adam state sharded, RL and long2short included) -m vlrl.cli <stage> ...; "
          "precision=bf16 runs a stage under bf16 autocast with fp32 weights (docs/guide.md).")


def _stage(sub, name: str, help_text: str, module: str, schema: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG)
    p.add_argument("--config", default=None, help="YAML config (see configs/tiny/ and configs/examples/)")
    p.add_argument("--show-config", action="store_true",
                   help="print every config key with its resolved value (defaults + YAML + overrides) and exit")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.set_defaults(func=lambda a: _run_stage(module, schema, a.config, a.overrides, a.show_config))


def _run_stage(module: str, schema: str, config: str | None, overrides: Sequence[str], show: bool) -> None:
    import importlib

    import yaml

    from vlrl.config import load_config, to_dict

    mod = importlib.import_module(module)
    cfg = load_config(getattr(mod, schema), config, overrides)
    if show:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return
    if config is None:
        raise ValueError("--config is required to run a stage (use --show-config to see the keys and defaults)")
    mod.main(cfg)


def _synth(a: argparse.Namespace) -> None:
    from vlrl.data.synth import generate, write_dataset

    kwargs = {"image_size": a.image_size} if a.task != "arithmetic" else {}
    samples = generate(a.task, a.n, seed=a.seed, levels=a.levels, **kwargs)
    path = write_dataset(samples, a.out)
    print(f"wrote {len(samples)} samples to {path}")


def _infer(a: argparse.Namespace) -> None:
    from vlrl.inference import Predictor

    predictor = Predictor.load(a.model, device=a.device)
    stream = None if a.no_stream else (lambda s: print(s, end="", flush=True))
    text = predictor.answer(a.question, images=a.image, max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                            top_p=a.top_p, system_prompt=a.system_prompt, stream=stream, seed=a.seed)
    print() if stream else print(text)


def _eval(a: argparse.Namespace) -> None:
    from vlrl.config import load_config
    import importlib

    stage = STAGES["eval"]
    mod = importlib.import_module(stage.module)
    cfg = load_config(getattr(mod, stage.schema), a.config, a.overrides)
    for flag, attr in (("model", "model"), ("data", "sources"), ("exclude_ids_from", "exclude_ids_from"),
                       ("n", "n"), ("temperature", "temperature"), ("max_new_tokens", "max_new_tokens"),
                       ("out", "output_dir"), ("batch_size", "batch_size")):
        if getattr(a, flag) not in (None, []):
            setattr(cfg, attr, getattr(a, flag))
    mod.main(cfg)


def _warmup_data(a: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from vlrl.data import LoadReport, load_samples
    from vlrl.curation import warmup_data as wd
    from vlrl.data.synth import write_dataset

    if bool(a.synth) == bool(a.model):
        raise ValueError("warmup-data: give either --synth TASK (programmatic traces) or --model DIR --data SRC "
                         "(rejection sampling)")
    if a.synth:
        samples = [s for t in a.synth for s in wd.programmatic(t, a.n, a.seed, a.levels, a.style, a.slip)]
        print(f"{len(samples)} programmatic '{a.style}' traces, all verified")
    else:
        from vlrl.models import load_pretrained

        if not a.data:
            raise ValueError("warmup-data: --model needs at least one --data source")
        report = LoadReport()
        prompts = [s for src in a.data for s in load_samples(src, "skip", report)]
        print(f"[data] {report.summary()}")
        model, processor = load_pretrained(a.model)
        samples, rates = wd.rejection_sample(model, processor, prompts, a.samples, a.temperature,
                                             max_new_tokens=a.max_new_tokens, keep=a.keep)
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "pass_rates.json").write_text(json.dumps(rates, indent=1))
        solved = sum(r > 0 for r in rates.values())
        print(f"kept {len(samples)} verified responses; {solved}/{len(rates)} prompts solved at least once; "
              f"mean pass rate {sum(rates.values()) / max(1, len(rates)):.3f}")
    print(f"wrote {write_dataset(samples, a.out)}")


def _list(registry_path: str) -> Callable[[argparse.Namespace], None]:
    def run(_: argparse.Namespace) -> None:
        import importlib

        module, name = registry_path.rsplit(":", 1)
        reg = getattr(importlib.import_module(module), name)
        for key in reg.keys():
            print(f"{key:20s} {reg.origin(key)}")

    return run


def _add_synth(sub) -> None:
    """vlrl data synth"""
    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("synth", help="generate a synthetic dataset (JSONL + PNG images)",
                        description="Generate a synthetic task deterministically by seed.")
    s.add_argument("--task", required=True, choices=["shapes", "shape_math", "arithmetic", "text_rendered"],
                   help="shapes: counting in shape scenes (image); shape_math: count the shapes, then compute "
                        "(image); arithmetic: text problems; text_rendered: "
                        "arithmetic rendered into images, each with its text twin (2 samples per --n)")
    s.add_argument("--n", type=int, required=True, help="number of samples (pairs for text_rendered)")
    s.add_argument("--out", required=True, help="output directory (data.jsonl + images/)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--levels", default="1-5", help="difficulty levels, e.g. '1-3' or '2,4' (default 1-5)")
    s.add_argument("--image-size", type=int, default=48, help="image side in pixels (default 48)")
    s.set_defaults(func=_synth)
    i = data.add_parser("inspect", help="show what a data source resolves to: columns, splits, rows, skips",
                        description="Open a data source as a stage would and print the resolved column map, the "
                                    "row count of each split (and which is used), modality counts, decoded rows "
                                    "and every row that would be skipped, with the reason.",
                        epilog="SOURCE forms: data.jsonl | DIR (a local dataset) | synth:TASK?n=.. | "
                               "hf:PATH_OR_ID?split=S&config=C&adapter=A&limit=N&columns.FIELD=COL[,COL]"
                               "&where.COL=V&ignore=COL&strict=false. Adapters: geometry3k, clevr_count, "
                               "mathvista, mmmu, chartqa.")
    i.add_argument("source", help="a data source, as in data.sources")
    i.add_argument("--rows", type=int, default=3, help="decoded rows to print (default 3)")
    i.add_argument("--model", default=None, help="a saved model dir: also check rows against its processor")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.set_defaults(func=_inspect)


def _inspect(a: argparse.Namespace) -> None:
    import json

    from vlrl.data.inspect import format_inspection, inspect_source

    info = inspect_source(a.source, a.rows, a.model)
    print(json.dumps(info, indent=1, default=str) if a.json else format_inspection(info))


def _add_infer(sub) -> None:
    """vlrl infer"""
    i = sub.add_parser("infer", help="answer a question about 0..n images with a saved model",
                       description="Answer a question with a saved model; the answer is streamed as it is generated.")
    i.add_argument("--model", required=True, help="a saved model directory (output_dir of a stage)")
    i.add_argument("--question", required=True, help="the question; '<image>' marks where each image goes "
                                                     "(default: images first)")
    i.add_argument("--image", action="append", default=[], help="image file; repeat for several images, omit for none")
    i.add_argument("--max-new-tokens", type=int, default=128)
    i.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    i.add_argument("--top-p", type=float, default=1.0)
    i.add_argument("--seed", type=int, default=None, help="sampling seed")
    i.add_argument("--system-prompt", default=None)
    i.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    i.add_argument("--no-stream", action="store_true", help="print the answer only when complete")
    i.set_defaults(func=_infer)


def _add_warmup_data(sub) -> None:
    """vlrl warmup-data"""
    w = sub.add_parser("warmup-data", help="build verified long-CoT warm-up data (programmatic or rejection sampling)",
                       description="Programmatic: vlrl warmup-data --synth shapes --n 1000 --out D. Rejection "
                                   "sampling: vlrl warmup-data --model DIR --data SRC --samples 8 --out D (keeps "
                                   "verified-correct responses, writes pass_rates.json).")
    w.add_argument("--out", required=True, help="output directory (data.jsonl + images/)")
    w.add_argument("--synth", action="append", default=[], choices=["shapes", "arithmetic", "text_rendered"],
                   help="synthetic task (repeatable)")
    w.add_argument("--n", type=int, default=1000, help="programmatic: samples per task")
    w.add_argument("--style", default="long", choices=["long", "short", "direct"])
    w.add_argument("--slip", type=float, default=0.2, help="fraction of long traces with a caught mistake")
    w.add_argument("--levels", default="1-5")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--model", help="rejection sampling: the model to sample from")
    w.add_argument("--data", action="append", default=[], help="rejection sampling: prompt source (repeatable)")
    w.add_argument("--samples", type=int, default=8, help="responses per prompt")
    w.add_argument("--temperature", type=float, default=1.0)
    w.add_argument("--max-new-tokens", type=int, default=512)
    w.add_argument("--keep", default="all", choices=["all", "shortest"], help="correct responses kept per prompt")
    w.set_defaults(func=_warmup_data)


def _add_eval(sub) -> None:
    """vlrl eval"""
    e = sub.add_parser("eval", help=STAGES["eval"].help + ", domain, difficulty",
                       description="Evaluate a saved model on held-out data; writes eval.json, eval.md, eval.png "
                                   "and records.jsonl.", epilog=EPILOG)
    e.add_argument("--model", help="saved model directory")
    e.add_argument("--data", action="append", default=[], help="data source (JSONL, dataset dir, synth:TASK?n=.. or "
                                                                "hf:PATH_OR_ID?split=..&adapter=..); repeatable; "
                                                                "adapters report accuracy per benchmark (domain)")
    e.add_argument("--exclude-ids-from", action="append", default=[],
                   help="training source; an evaluation id found there is an error (repeatable)")
    e.add_argument("--n", type=int, help="responses per prompt (default 1; n > 1 needs --temperature > 0)")
    e.add_argument("--temperature", type=float, help="0 = greedy (default)")
    e.add_argument("--max-new-tokens", type=int)
    e.add_argument("--batch-size", type=int)
    e.add_argument("--out", help="output directory (default runs/eval)")
    e.add_argument("--config", default=None, help="optional YAML (EvalConfig); flags override it")
    e.add_argument("overrides", nargs="*", help="key=value config overrides")
    e.set_defaults(func=_eval)


def _add_merge(sub) -> None:
    m = sub.add_parser("merge", help="average the weights of models of one architecture (long2short merging)",
                       description="Weighted average of two or more saved models (default: plain average, as in "
                                   "Kimi k1.5); the output is a normal model directory.")
    m.add_argument("models", nargs="+", help="saved model directories (the first one's processor is kept)")
    m.add_argument("--out", required=True, help="output model directory")
    m.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per model (normalised)")
    m.add_argument("--modules", nargs="+", default=None, choices=["encoder", "projector", "llm"],
                   help="average only these modules; the rest is taken from the first model")

    def run(a):
        from vlrl.algos.merge import merge_models

        merge_models(a.models, a.out, a.weights, a.modules)

    m.set_defaults(func=run)


def _add_export(sub) -> None:
    e = sub.add_parser("export", help="write a saved model as a transformers LLaVA directory",
                       description="Write MODEL (a vlrl model directory, or a LLaVA checkpoint) as a native "
                                   "transformers LLaVA directory (config.json, safetensors with transformers' names, "
                                   "tokenizer with its chat template): LlavaForConditionalGeneration.from_pretrained "
                                   "loads it with no vlrl installed. Takes an hf_vision encoder or a plain open_clip ViT "
                                   "(written as CLIP's vision tower) and the mlp projector; other parts are an error "
                                   "naming them.")
    e.add_argument("model", help="saved model directory (output_dir of a stage)")
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--adapter", action="store_true",
                   help="write only the LoRA adapter (peft format for the LLaVA layout) of MODEL, a training checkpoint "
                        "(checkpoints keep adapters unmerged)")
    e.add_argument("--base", default="", help="with --adapter: the base model it applies to, recorded in adapter_config")

    def run(a):
        from vlrl.models import load_pretrained
        from vlrl.models.llava import export_llava, export_lora_adapter

        model, processor = load_pretrained(a.model)
        if a.adapter:
            print(f"wrote {export_lora_adapter(model, a.out, a.base)} (LoRA adapter, peft)")
        else:
            print(f"wrote {export_llava(model, processor, a.out)} (transformers LLaVA)")

    e.set_defaults(func=run)


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="overlay the curves of several runs (e.g. kimi vs grpo) in one PNG",
                       description="One panel per metric, one line per run, from each run's metrics.jsonl.")
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                   help="a run to draw: a label and its output directory (or metrics.jsonl); repeat")
    p.add_argument("--keys", nargs="+", default=None, help="metrics to draw (default: the RL stage's curves)")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--title", default="")
    p.add_argument("--max-step", type=int, default=None,
                   help="draw steps up to this one only (compare a 40-iteration run with a 20-iteration one)")

    def run(a):
        from vlrl.eval.curves import plot_runs

        runs = {}
        for spec in a.run:
            name, sep, path = spec.partition("=")
            if not sep:
                raise ValueError(f"--run '{spec}': expected NAME=DIR")
            runs[name] = path
        if a.keys is None:
            from vlrl.stages.rl import CURVES

            a.keys = list(CURVES)
        out = plot_runs(runs, a.keys, a.out, a.title, a.max_step)
        within = f" up to step {a.max_step}" if a.max_step is not None else ""
        print(f"wrote {out}" if out else f"nothing to plot: none of the keys is in these runs{within}")

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlrl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    for name, stage in STAGES.items():  # the stage table: one subcommand per stage
        _add_eval(sub) if name == "eval" else _stage(sub, name, stage.help, stage.module, stage.schema)
    _add_merge(sub)
    _add_export(sub)
    _add_plot(sub)
    _add_warmup_data(sub)
    _add_infer(sub)
    for name, path in (("encoders", "vlrl.models.encoders:ENCODERS"), ("projectors", "vlrl.models.projectors:PROJECTORS")):
        reg = sub.add_parser(name, help=f"registered {name}").add_subparsers(dest=f"{name}_command", required=True)
        reg.add_parser("list", help=f"list registered {name}, third-party plugins included").set_defaults(func=_list(path))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        from vlrl.distributed import shutdown

        shutdown()  # under accelerate launch: every process finishes before the group is torn down
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError, FloatingPointError) as e:  # NonFiniteError included
        if os.environ.get("VLRL_DEBUG"):
            raise
        print(f"vlrl: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
