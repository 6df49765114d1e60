"""The ``gpicl-bench`` command line: parse, call one library function per command, render. No logic of its own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import io
import logging
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from gpicl_bench import (
    __version__,
    analysis,
    atomic,
    batching,
    checkpoints,
    distributed,
    engine,
    plots,
    reference,
    report,
    training,
)
from gpicl_bench.encoders import ENCODERS
from gpicl_bench.errors import UserError
from gpicl_bench.features import EncodedSuite, EncodeProgress, FeatureSettings
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.progress import CountLines, ProgressLines, duration, size
from gpicl_bench.results import GroupKey, ResultsFile, load
from gpicl_bench.spec import Spec, load_spec, read_toml
from gpicl_bench.suites import SUITES, open_suite

app = typer.Typer(
    name="gpicl-bench",
    help="Benchmark in-context and few-shot learners on the very same seeded episodes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
stdout = Console()
stderr = Console(stderr=True)


ENCODER_HELP = "Encoder that turns image suites into features, e.g. pixels, conv4 or timm:resnet50 (default pixels)."
DATA_ROOT_HELP = "Folder holding the image suites' data (default: $GPICL_BENCH_DATA)."
CACHE_DIR_HELP = "Feature cache folder (default: $GPICL_BENCH_CACHE or ~/.cache/gpicl-bench)."


class OutputFormat(str, Enum):
    rich = "rich"
    markdown = "markdown"
    latex = "latex"
    csv = "csv"


class TestKind(str, Enum):
    t = "t"
    wilcoxon = "wilcoxon"


def _print_version(asked: bool) -> None:
    if asked:
        stdout.print(f"gpicl-bench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a full traceback on errors (anywhere on the command line).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    handler = logging.StreamHandler(sys.stderr)  # e.g. progress of learners meta-trained during a run
    handler.setFormatter(logging.Formatter("%(message)s"))
    package_log = logging.getLogger("gpicl_bench")
    package_log.handlers[:] = [handler]
    package_log.setLevel(logging.INFO)


@app.command()
def run(
    spec_path: Annotated[
        Path | None,
        typer.Argument(metavar="[SPEC]", help="Benchmark spec (TOML); default: the embedded quick benchmark."),
    ] = None,
    suite: Annotated[
        list[str] | None, typer.Option("--suite", help="Suite reference, e.g. digits or digits:project (repeatable).")
    ] = None,
    learner: Annotated[
        list[str] | None, typer.Option("--learner", help="Learner reference, e.g. knn:k=3 (repeatable).")
    ] = None,
    ways: Annotated[list[int] | None, typer.Option("--ways", help="Classes per episode (repeatable).")] = None,
    shots: Annotated[list[int] | None, typer.Option("--shots", help="Support images per class (repeatable).")] = None,
    queries: Annotated[list[int] | None, typer.Option("--queries", help="Query images per class.")] = None,
    episodes: Annotated[int | None, typer.Option(help="Episodes per setting.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed that defines the episodes.")] = None,
    split: Annotated[str | None, typer.Option(help="Split to evaluate on (default: test).")] = None,
    name: Annotated[str | None, typer.Option(help="Run name, used in the default output file name.")] = None,
    encoder: Annotated[str | None, typer.Option(help=ENCODER_HELP)] = None,
    data_root: Annotated[str | None, typer.Option(help=DATA_ROOT_HELP)] = None,
    cache_dir: Annotated[str | None, typer.Option(help=CACHE_DIR_HELP)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[
        str, typer.Option(help="Episodes per batch, or auto (the most that fit in memory); results never depend on it.")
    ] = str(engine.DEFAULT_BATCH_SIZE),
    out: Annotated[Path | None, typer.Option(help="Results file (default: results/<name>-<timestamp>.h5).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Complete the missing groups of this results file.")] = None,
    show_spec: Annotated[bool, typer.Option(help="Print the resolved spec as TOML and exit.")] = False,
    skip_bad_images: Annotated[bool, typer.Option(help="Skip unreadable images with a warning.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Evaluate learners on seeded episodes and write per-episode results to HDF5 (several processes: torchrun)."""
    batch = batching.parse_batch_size(batch_size)
    overrides = {
        "suites": suite,
        "learners": learner,
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "episodes": episodes,
        "seed": seed,
        "split": split,
        "name": name,
        "encoder": encoder,
        "data_root": data_root,
        "cache_dir": cache_dir,
    }
    if resume is not None and (spec_path is not None or any(v not in (None, []) for v in overrides.values())):
        raise UserError("--resume takes the spec stored in the file; drop the spec and setting options")
    spec = None if resume is not None else (load_spec(spec_path) if spec_path else Spec()).replace(**overrides)
    if spec is not None and show_spec:
        sys.stdout.write(spec.to_toml())
        return
    with distributed.processes(engine.resolve_device(device)) as (ranks, torch_device):
        _run(spec, resume, out, ranks, torch_device, batch, skip_bad_images, quiet or not ranks.is_main)


def _run(
    spec: Spec | None,
    resume: Path | None,
    out: Path | None,
    ranks: distributed.Ranks,
    device: torch.device,
    batch_size: batching.BatchSize,
    skip_bad_images: bool,
    quiet: bool,
) -> None:
    """The run command on one process (``spec`` None: resume ``resume``): rank 0 owns the results file and the
    output, every rank evaluates."""
    results: ResultsFile | None = None
    try:
        if spec is None:
            results = distributed.on_main(ranks, lambda: ResultsFile.resume(resume))
            spec = distributed.broadcast(ranks, engine.spec_for_resume(results) if results is not None else None)
        else:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = out or Path("results") / f"{spec.name}-{stamp}.h5"
            if ranks.is_main:
                ResultsFile.check_new(path)
        progress = _progress(quiet)
        settings = engine.feature_settings(spec, device, _encode_progress(progress, quiet), skip_bad_images)
        if resume is None:
            spec, notes = engine.with_available_suites(spec, settings)
            for note in notes:
                stderr.print(note, markup=False, highlight=False, soft_wrap=True)
            with progress:
                engine.check(spec, settings)  # bad input fails (and images are encoded) before any file is written
            results = distributed.on_main(ranks, lambda: ResultsFile.create(path, engine.run_attributes(spec)))
        _evaluate(spec, results, ranks, device, batch_size, settings, progress, quiet)
    finally:
        if results is not None:
            results.close()
    if results is None:
        return
    for table in report.summary_tables(analysis.summarise(load(results.path))):
        stdout.print(report.to_rich(table))
    stdout.print(f"results: {results.path}", markup=False, highlight=False)


def _evaluate(
    spec: Spec,
    results: ResultsFile | None,
    ranks: distributed.Ranks,
    device: torch.device,
    batch_size: batching.BatchSize,
    settings: FeatureSettings,
    progress: Progress,
    quiet: bool,
) -> None:
    """Run the spec's missing groups with a progress bar per group (lines where stderr is not a terminal); a long
    run first says its size and expected time; Ctrl-C says how to complete the file."""
    tasks: dict[GroupKey, int] = {}
    lines = None if quiet or stderr.is_terminal else ProgressLines(_say)

    def on_start(plan: engine.RunPlan) -> None:
        if ranks.is_main and plan.expected_seconds is not None:
            groups = f"{len(plan.groups)} group{'s' if len(plan.groups) > 1 else ''}"
            _say(
                f"a long run: {groups} of {plan.episodes:,} episodes ({plan.total_episodes:,} in all, results about "
                f"{size(plan.result_bytes)}), expected to take about {duration(plan.expected_seconds)} (from a timed "
                "batch of each group); each group is saved when it finishes"
            )
        if lines is not None:
            lines.start(plan)

    def on_progress(key: GroupKey, done: int, total: int) -> None:
        if lines is not None:
            lines.update(key, done, total)
        if key not in tasks:
            tasks[key] = progress.add_task(f"{key.suite} {key.way}w{key.shot}s {key.learner}", total=total)
        progress.update(tasks[key], completed=done)

    try:
        with progress:
            engine.run(spec, results, device, batch_size, on_progress, settings, ranks, on_start)
    except KeyboardInterrupt:
        if results is not None:
            _say(
                f"interrupted: finished groups are saved in {results.path}; "
                f"complete it with: gpicl-bench run --resume {results.path}"
            )
        raise typer.Exit(130) from None


@app.command()
def compare(
    files: Annotated[list[Path], typer.Argument(metavar="RESULTS.h5...", help="Results files to compare.")],
    output_format: Annotated[OutputFormat, typer.Option("--format", help="rich, markdown, latex or csv.")] = (
        OutputFormat.rich
    ),
    test: Annotated[TestKind, typer.Option(help="Paired test: t (paired t-test) or wilcoxon.")] = TestKind.t,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    references: Annotated[
        list[str] | None,
        typer.Option("--reference", help="Add published numbers of a reference set, e.g. caml-2024 (repeatable)."),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            help="Non-inferiority margin in accuracy points (e.g. 0.5): adds one-sided p-values that a beats b, and "
            "that b is at least as good as a up to the margin.",
            min=0.0,
            max=100.0,
        ),
    ] = None,
) -> None:
    """Compare learners that saw the same episodes: paired differences, 95% CIs and p-values."""
    if output is not None:
        atomic.check_writable(output)
    fraction = None if margin is None else margin / 100
    summary, pairs = analysis.compare(analysis.load_many(files), test.value, fraction)
    published, notes = reference.beside(summary, references) if references else (None, [])
    for note in notes:
        stderr.print(note, markup=False, highlight=False, soft_wrap=True)
    tables = report.summary_tables(summary, speed=False, published=published) + report.pair_tables(pairs)
    if output_format is OutputFormat.csv:
        text = report.comparison_csv(summary, pairs, published)
    elif output_format is OutputFormat.rich and output is None:
        for table in tables:
            stdout.print(report.to_rich(table))
        return
    elif output_format is OutputFormat.rich:
        console = Console(file=io.StringIO(), width=160)
        for table in tables:
            console.print(report.to_rich(table))
        text = console.file.getvalue()
    else:
        render = report.to_markdown if output_format is OutputFormat.markdown else report.to_latex
        text = "\n".join(render(t) for t in tables)
    _write_text(text, output)


@app.command("export-csv")
def export_csv(
    file: Annotated[Path, typer.Argument(metavar="RESULTS.h5", help="Results file.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV file (default: standard output).")] = None,
    per_episode: Annotated[bool, typer.Option(help="One row per episode instead of one per group.")] = False,
) -> None:
    """Export results as tidy CSV for pandas, spreadsheets and papers."""
    if output is not None:
        atomic.check_writable(output)
    frame = load(file)
    table = frame if per_episode else analysis.summarise(frame)
    _write_text(table.to_csv(index=False), output)


def _train(
    spec_path: Annotated[
        Path | None,
        typer.Argument(metavar="[SPEC]", help="Training spec (TOML of the knobs below); flags override it."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint file (NAME.safetensors, weights and config together); default: "
            "results/checkpoints/<kind>-<timestamp>.safetensors."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the unfinished run of this --out from its saved state (NAME.training-state.pt, written at "
            "every held-out check and when the time budget ends), with the same options."
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing checkpoint at --out.")] = False,
    **knobs: object,
) -> None:
    """Meta-train a GPICL Transformer (or LSTM) on randomly projected tasks and save a checkpoint (several
    processes: torchrun, DistributedDataParallel)."""
    with distributed.processes(engine.resolve_device(device)) as (ranks, torch_device):
        _train_on(ranks, torch_device, spec_path, out, quiet or not ranks.is_main, knobs, resume, force)


def _train_on(
    ranks: distributed.Ranks,
    torch_device: torch.device,
    spec_path: Path | None,
    out: Path | None,
    quiet: bool,
    knobs: dict[str, Any],
    resume: bool,
    force: bool,
) -> None:
    values = read_toml(spec_path) if spec_path is not None else {}
    target = out or values.pop("out", None)
    values.update({k: v for k, v in knobs.items() if v is not None})
    options = training.TrainingOptions.from_values(values, str(spec_path or "options"))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = Path(target) if target else Path("results") / "checkpoints" / f"{options.kind}-{stamp}.safetensors"
    progress = _progress(quiet, TextColumn("{task.fields[info]}"))
    task = progress.add_task("meta-training", total=options.steps, info="")
    held_out = "-"

    def on_log(entry: training.TrainingLog) -> None:
        nonlocal held_out
        if entry.held_out_accuracy is not None:
            held_out = f"{100 * entry.held_out_accuracy:.1f}%"
            stderr.print(
                f"step {entry.step}: loss {entry.loss:.3f}, held-out accuracy {held_out}", markup=False, highlight=False
            )
        progress.update(task, completed=entry.step, info=f"loss {entry.loss:.3f} · held-out {held_out}")

    with progress:
        log = on_log if ranks.is_main else None
        path = training.train_to_checkpoint(options, torch_device, target, log, ranks, resume, force)
    if ranks.is_main:
        if checkpoints.read_metadata(path)["metrics"]["plateau_exit_step"] is None:
            stderr.print(
                "warning: the training loss never left its plateau (chance level): this checkpoint predicts at "
                "about chance; train for more steps or a longer --time-budget",
                markup=False,
                highlight=False,
            )
        stdout.print(f"checkpoint: {path}", markup=False, highlight=False)


def _training_knob(field: dataclasses.Field[object]) -> inspect.Parameter:
    """A CLI option for one training knob, defaulting to None so that a spec's value is kept unless given."""
    kind = training.knob_type(field)
    flag = "--" + field.name.replace("_", "-")
    names = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
    option = typer.Option(
        names,
        help=f"{field.metadata['help']} [default: {field.default}]",
        rich_help_panel="Training knobs",
        show_default=False,
    )
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


_fixed = [
    p
    for p in inspect.signature(_train, eval_str=True).parameters.values()
    if p.kind is not inspect.Parameter.VAR_KEYWORD
]
_knobs = [_training_knob(f) for f in dataclasses.fields(training.TrainingOptions)]
_train.__signature__ = inspect.Signature(_fixed + _knobs, return_annotation=None)  # type: ignore[attr-defined]
_train.__annotations__ = {**{p.name: p.annotation for p in _fixed + _knobs}, "return": None}
app.command("train")(_train)


@app.command()
def plot(
    file: Annotated[Path, typer.Argument(metavar="RESULTS.h5", help="Results file.")],
    output: Annotated[
        list[Path] | None,
        typer.Option("--output", "-o", help="Figure file: .png, .pdf or .svg (repeatable; default results.png)."),
    ] = None,
) -> None:
    """Plot accuracy vs shots with 95% CIs, one panel per setting, and in-context learning curves with 95% bands
    (needs the plot extra: matplotlib)."""
    for path in plots.plot_results(file, output or [Path("results.png")]):
        stdout.print(f"figure: {path}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def learners() -> None:
    """List the learners with their options."""
    table = Table("learner", "description", "options (defaults)")
    for entry in LEARNERS:
        table.add_row(entry.name, entry.description, entry.option_help() or "-")
    stdout.print(table)


@app.command()
def suites(
    suite: Annotated[
        str | None, typer.Argument(metavar="[SUITE]", help="Show the classes and images this suite finds per split.")
    ] = None,
    data_root: Annotated[str | None, typer.Option(help=DATA_ROOT_HELP)] = None,
) -> None:
    """List the suites with their splits and options (every suite also takes the option project), or show what
    one suite finds on disk."""
    if suite is None:
        table = Table("suite", "description", "splits", "options (defaults)")
        for entry in SUITES:
            splits = getattr(entry.factory, "splits", ())
            options = entry.option_help()
            if hasattr(entry.factory, "default_dir"):  # an image suite: say where it looks by default
                options = options.replace("root", f"root=<data root>/{entry.factory.default_dir}", 1)
            table.add_row(entry.name, entry.description, ", ".join(splits), options or "project=False")
        stdout.print(table)
        stdout.print(f"encoders for image suites: {', '.join(entry.name for entry in ENCODERS)}", highlight=False)
        return
    opened = open_suite(suite, FeatureSettings(data_root=data_root or ""))
    table = Table("split", "classes", "images", "examples of classes", title=opened.label)
    for split in opened.suite.splits:
        if isinstance(opened.suite, EncodedSuite):
            found = opened.suite.images.images(split)
            names, count = found.class_names, len(found.items)
        else:
            data = opened.suite.load(split)
            names, count = data.class_names, len(data.labels)
        table.add_row(split, str(len(names)), str(count), ", ".join(names[:4]) + (", …" if len(names) > 4 else ""))
    stdout.print(table)


@app.command()
def features(
    suite: Annotated[list[str], typer.Option("--suite", help="Image suite reference (repeatable).")],
    encoder: Annotated[str, typer.Option(help=ENCODER_HELP)] = "pixels",
    data_root: Annotated[str | None, typer.Option(help=DATA_ROOT_HELP)] = None,
    cache_dir: Annotated[str | None, typer.Option(help=CACHE_DIR_HELP)] = None,
    split: Annotated[list[str] | None, typer.Option(help="Splits to encode (repeatable; default: all).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="Image-decoding threads (0: one per core, up to 8).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per encoder forward pass.")] = 128,
    skip_bad_images: Annotated[bool, typer.Option(help="Skip unreadable images with a warning.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Fill the feature cache ahead of runs: encode image suites' splits once."""
    if workers < 0 or batch_size < 1:
        raise UserError("--workers must be ≥ 0 and --batch-size ≥ 1")
    progress = _progress(quiet)
    settings = FeatureSettings(
        encoder,
        data_root or "",
        cache_dir or "",
        str(engine.resolve_device(device)),
        workers,
        batch_size,
        skip_bad_images,
        _encode_progress(progress, quiet),
    )
    opened = [open_suite(text, settings) for text in suite]
    table = Table("suite", "split", "images", "dim", "cache entry")
    with progress:
        for one in opened:
            if not isinstance(one.suite, EncodedSuite):
                raise UserError(f"{one.label} is not an image suite; it needs no features")
            for name in split or one.suite.splits:
                data = one.suite.load(name)
                table.add_row(one.label, name, str(len(data.labels)), str(data.dim), str(one.suite.cache_path(name)))
    stdout.print(table)


def _progress(quiet: bool, *extra: TextColumn) -> Progress:
    """The progress bar every long command shows on stderr (so stdout keeps only results)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeRemainingColumn(),
        console=stderr,
        disable=quiet or not stderr.is_terminal,  # a log gets lines instead (gpicl_bench.progress)
        transient=True,
    )


def _say(line: str) -> None:
    stderr.print(line, markup=False, highlight=False, soft_wrap=True)


def _encode_progress(progress: Progress, quiet: bool) -> EncodeProgress:
    """A progress callback for image encoding: one bar per (suite, split), lines where stderr is not a terminal."""
    bars: dict[str, TaskID] = {}
    lines = None if quiet or stderr.is_terminal else CountLines(_say, "images")

    def update(description: str, done: int, total: int) -> None:
        if lines is not None:
            lines.update(f"encoding {description}", done, total)
        if description not in bars:
            bars[description] = progress.add_task(f"encoding {description}", total=total)
        progress.update(bars[description], completed=done)

    return update


def _write_text(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    atomic.write_text(output, text)
    stderr.print(f"wrote {output}", markup=False, highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2; ``--debug``, anywhere on the command
    line, shows the traceback instead."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    args = [arg for arg in args if arg != "--debug"]
    try:
        code = app(args=args, prog_name="gpicl-bench", standalone_mode=False)
    except UserError as error:
        if debug:
            raise
        print(f"gpicl-bench: error: {error}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting adds no traceback
        print("gpicl-bench: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as error:  # usage errors: bad option, missing argument, wrong type
        if debug:
            raise
        print(f"gpicl-bench: error: {error.format_message()}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
