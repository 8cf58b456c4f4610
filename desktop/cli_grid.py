"""`sfumato grid --x "Steps: 4,8" --y "CFG Scale: 3,7" [--z ...] <the generate options>`: an X/Y/Z plot without
the window (desktop/core/xyz.py).

The generate options make the base request; each axis is "NAME: VALUES" as in A1111's X/Y/Z plot (names in any
case). Every cell is saved as its own picture and the grid in the output folder's "grids" folder; their paths are
printed when the plot is done, the grid first. Exit codes as `sfumato generate`'s: 0 done, 2 bad input (a bad
axis is one sentence), 1 a failed generation or write, 130 interrupted (the cells done are kept and printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import sys

from desktop import cli
from desktop.core import credentials, paths, settings
from desktop.core.errors import Cancelled, InvalidRequest, SfumatoError
from desktop.core.gallery.store import GalleryStore
from desktop.core.runs import RunContext
from desktop.core.xyz import AXIS_HELP, AXIS_NAMES, Axis, InvalidAxis, PlotRun, parse_axis


def build_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    parser.prog = "sfumato grid"
    parser.description = ("An X/Y/Z plot: every combination of up to three axes' values, each cell saved as its own "
                          "picture, and a labelled grid of them. --batch is not used: each cell is one picture.")
    axes = "; ".join(f"{name}: {AXIS_HELP[name]}" for name in AXIS_NAMES)
    for option in ("--x", "--y", "--z"):
        parser.add_argument(option, metavar='"AXIS: VALUES"',
                            help=f"an axis and its values, as A1111's X/Y/Z plot types them ({option[2].upper()} "
                                 f"axis)" + (f". The axes: {axes}" if option == "--x" else ""))
    return parser


def _axis(option: str, spec: str | None) -> Axis | None:
    if spec is None:
        return None
    name, colon, text = spec.partition(":")
    if not colon:
        raise InvalidAxis(f'{option} needs an axis and its values, such as "Steps: 4,8"; the axes are '
                          f"{', '.join(AXIS_NAMES)}.")
    return parse_axis(name, text)


def main(argv: list[str]) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(cli._values_may_start_with_dash(parser, argv))
        axes = [_axis(option, getattr(args, option[2:])) for option in ("--x", "--y", "--z")]
        if not any(axes):
            raise cli.UsageError('give at least one axis, such as --x "Steps: 4,8"')
        base = cli.request_from_args(args)
        base.validate()
        plot = PlotRun(base, *axes)
        plot.cells()  # every cell checked before the model loads
    except InvalidRequest as error:
        print(f"sfumato: {cli.OPTIONS.get(error.field, error.field)}: {error.message}", file=sys.stderr)
        return 2
    except (cli.UsageError, SfumatoError) as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    if args.batch != 1:
        print("sfumato: --batch is not used by a plot: each cell is one picture.", file=sys.stderr)
    DemoModelUnwritable = cli.demo_model_error(args)
    progress = cli._Progress()
    backend = cli.start_backend(args, progress)
    if backend is None:
        return 2
    folder = args.out or paths.output_dir()
    store = cli.output_store(folder)
    if store is None:
        return 1
    saved = []
    context = _context(store, folder, saved)
    try:
        outcome = plot.run(backend, progress.state, context)
        progress.end()
        reading = True
        for _, _, path in outcome.shown:
            reading = reading and cli._print_path(path)
        print(outcome.summary, file=sys.stderr)
        return 0
    except DemoModelUnwritable as error:
        print(f"sfumato: could not build the demo model in {error.folder}: {error.reason}.", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Cancelled):
        progress.end()
        for path in saved:
            cli._print_path(path)
        print(f"\nsfumato: interrupted; {len(saved)} of {plot.pictures()} pictures were made and saved.",
              file=sys.stderr)
        return 130
    except SfumatoError as error:
        progress.end()
        print(f"sfumato: {error}", file=sys.stderr)
        _cells_without_grid(saved, plot.pictures())
        return 1
    except OSError as error:
        progress.end()
        print(f"sfumato: the plot stopped: a picture could not be written to {folder}: {cli._reason(error)}",
              file=sys.stderr)
        _cells_without_grid(saved, plot.pictures())
        return 1
    finally:
        try:
            store.refresh()
        except (OSError, SfumatoError, sqlite3.Error):
            pass  # the pictures are saved; the next refresh indexes whatever this one could not
        store.close()


def _cells_without_grid(saved: list, count: int) -> None:
    """After a plot failed: the paths of the cells it saved (stdout, as a finished plot prints them), and a line
    saying that the grid was not made."""
    if not saved:
        return
    for path in saved:
        if not cli._print_path(path):
            break
    print(f"sfumato: {len(saved)} of {count} pictures were made and saved; the grid was not made.", file=sys.stderr)


def _context(store: GalleryStore, folder, saved: list) -> RunContext:
    """A RunContext that saves into `store` as `sfumato generate` does, keeping the cells' paths in `saved`."""
    window_settings = dataclasses.replace(settings.load(set_aside=False), output_folder=str(folder))
    signing = credentials.Signing.from_settings(window_settings)

    def save(results, loaded):
        shown = []
        for r in results:
            path = store.add_result(r.image, r.request, r.seed, loaded.name, loaded.hash, r.params,
                                    window_settings.mark_ai, signing)
            saved.append(path)
            shown.append((r.image, r.seed, path))
        return shown

    def add_picture(name, image, parameters, extra):
        path = store.add_picture(folder / name, image, parameters, extra, signing)  # saved, signed and indexed
        if signing is not None and signing.problems:
            print(f"sfumato: {signing.summary()}", file=sys.stderr)
            signing.problems.clear()
        return path

    return RunContext(window_settings, save, add_picture, lambda text: None)
