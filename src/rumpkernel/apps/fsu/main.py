"""The ``fsu`` command line: option parsing, dispatch, sessions, exit statuses.

    fsu [OPTIONS] COMMAND [OPTIONS] IMAGE [ARGS ...]      one command (fsu ls disk.img -l /)
    fsu_COMMAND [OPTIONS] IMAGE [ARGS ...]                the same under its fs-utils name
    fsu [OPTIONS] IMAGE --batch < commands                many commands, one kernel boot
    fsu [OPTIONS] IMAGE                                   interactive prompt (or batch when
                                                          standard input is not a terminal)
    fsu makefs ...                                        build an image from a directory

    fsu --print-completion bash|zsh / --print-man PAGE    generated completion and man pages

OPTIONS (before IMAGE, so they never clash with a command's own flags):
    -t TYPE        file system type (ext2, ext3, ext4, msdos/vfat/fat); detected otherwise
    -r             open the image read-only (commands that only read always do)
    -o OPTIONS     mount options (comma-separated)
    -v             longer error messages (the kernel's detail)
    --best-effort  read a truncated image (read-only; what is missing reads as zeros)
IMAGE is ``FILE``, ``FILE@OFFSET`` (bytes; k/m/g/s suffixes) or ``FILE%N`` (partition N of an
MBR or GPT table).

Interface: ``main(argv=None, prog="fsu") -> int``; ``classic(name)`` for fsu_NAME scripts.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from rumpkernel.apps.cli import restore_sigpipe
from rumpkernel.apps.fsu.common import EXIT_OK, EXIT_TROUBLE, Ctx, Trouble, Usage

VERSION = "rumpkernel fsu 0.1.0"


@dataclass
class GlobalOpts:
    fstype: str | None = None
    readonly: bool = False
    options: str | None = None
    verbose: bool = False
    batch: bool = False
    best_effort: bool = False


def _take_global(args: list[str], g: GlobalOpts, *, allow_batch: bool = False) -> list[str]:
    """Consume leading fsu options from ``args``; return the rest."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-t", "--type", "-o", "--options"):
            if i + 1 >= len(args):
                raise Usage(f"option {a} needs an argument")
            if a in ("-t", "--type"):
                g.fstype = args[i + 1]
            else:
                g.options = args[i + 1]
            i += 2
            continue
        if a.startswith("--type="):
            g.fstype = a.split("=", 1)[1]
        elif a.startswith("--options="):
            g.options = a.split("=", 1)[1]
        elif a.startswith("-t") and len(a) > 2:
            g.fstype = a[2:]
        elif a in ("-r", "--read-only"):
            g.readonly = True
        elif a in ("-v", "--verbose"):
            g.verbose = True
        elif a == "--best-effort":
            g.best_effort = g.readonly = True
        elif allow_batch and a in ("-b", "--batch"):
            g.batch = True
        elif a == "--":
            return args[i + 1:]
        else:
            return args[i:]
        i += 1
    return []


def _spec(text: str) -> Any:
    from rumpkernel.client.files.imagespec import parse_image_spec

    try:
        return parse_image_spec(text)
    except ValueError as e:
        raise Trouble(str(e)) from None


def _say(prog: str, msg: str) -> None:
    sys.stderr.write(f"{prog}: {msg}\n")


def usage_text(prog: str = "fsu") -> str:
    from rumpkernel.apps.fsu.commands import all_commands

    lines = [f"usage: {prog} [-t TYPE] [-r] [-o OPTS] COMMAND IMAGE [ARGS ...]",
             f"       {prog} [-t TYPE] [-r] IMAGE [--batch]      (commands from stdin)",
             f"       {prog} makefs -t TYPE [-s SIZE] ... IMAGE DIR",
             "", "IMAGE is FILE, FILE@OFFSET or FILE%PARTITION.  Commands:"]
    for name, c in sorted(all_commands().items()):
        lines.append(f"  {name:<8} {c.summary}")
    lines.append(f"  {'makefs':<8} build an image from a host directory")
    lines.append(f"\n'{prog} COMMAND --help' describes a command.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, prog: str = "fsu") -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        restore_sigpipe()
    try:
        return _main(args, prog)
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _main(args: list[str], prog: str) -> int:
    from rumpkernel.apps.fsu.commands import MODULE_OF

    g = GlobalOpts()
    try:
        rest = _take_global(args, g, allow_batch=True)
    except Usage as e:
        _say(prog, str(e))
        return EXIT_TROUBLE
    if not rest or rest[0] in ("-h", "--help", "help"):
        if len(rest) > 1 and rest[0] == "help":
            return classic(rest[1], ["--help"], prog=f"{prog} {rest[1]}")
        (sys.stdout if rest else sys.stderr).write(usage_text(prog))
        return EXIT_OK if rest else EXIT_TROUBLE
    if rest[0] == "--version":
        print(VERSION)
        return EXIT_OK
    if rest[0] in ("--print-completion", "--print-man"):
        return _print_doc(prog, rest)
    name = rest[0]
    if name == "makefs":
        from rumpkernel.apps.fsu.makefs import main as makefs_main

        return makefs_main(rest[1:], prog=f"{prog} makefs")
    if name in MODULE_OF:
        return run_command(name, rest[1:], g, f"{prog} {name}")
    if name.startswith("-"):
        _say(prog, f"unknown option {name!r}\n{usage_text(prog)}")
        return EXIT_TROUBLE
    # fsu IMAGE [--batch]: many commands against one boot
    more = _take_global(rest[1:], g, allow_batch=True)
    if more:
        _say(prog, f"unknown command {name!r} (or unexpected {' '.join(more)!r} after the "
                   f"image)\n{usage_text(prog)}")
        return EXIT_TROUBLE
    from rumpkernel.apps.fsu.batch import run_batch

    return run_batch(name, g, prog)


def _print_doc(prog: str, rest: list[str]) -> int:
    """``--print-completion bash|zsh`` and ``--print-man PAGE``: the generated files installed
    with the package, for copying where the shell and man look (docs/fsu.md)."""
    from rumpkernel.apps import docgen

    files = {"bash": "completion/fsu.bash", "zsh": "completion/_fsu"} \
        if rest[0] == "--print-completion" else \
        {name: f"man/{name}.{sec}" for name, (sec, _) in docgen.PAGES.items()}
    if len(rest) != 2 or rest[1] not in files:
        _say(prog, f"{rest[0]} takes one of: {', '.join(files)}")
        return EXIT_TROUBLE
    sys.stdout.write(docgen.read_installed(files[rest[1]]))
    return EXIT_OK


def classic(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """``fsu_NAME`` scripts: ``fsu_ls [OPTIONS] IMAGE [ARGS]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or f"fsu_{name}"
    if argv is None:
        restore_sigpipe()
    try:
        if name == "makefs":
            from rumpkernel.apps.fsu.makefs import main as makefs_main

            return makefs_main(args, prog=prog)
        return run_command(name, args, GlobalOpts(), prog)
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130


def run_command(name: str, args: list[str], g: GlobalOpts, prog: str) -> int:
    from rumpkernel.apps.fsu.commands import get_command
    from rumpkernel.apps.fsu.session import open_session

    cmd = get_command(name)
    if cmd is None:
        _say(prog, f"unknown command {name!r}")
        return EXIT_TROUBLE
    try:
        image, cmd_args, wants_help = split_image(cmd, prog, args, g)
        if wants_help:
            sys.stdout.write(cmd.help(prog))
            return EXIT_OK
        if image is None:
            raise Usage(f"missing IMAGE\n{cmd.help(prog).splitlines()[0]}")
        check_image_first(cmd, prog, args, image, cmd_args)
        ns = cmd.parse(prog, cmd_args)
        spec = _spec(image)
        if not cmd.session:
            return _run_hostside(cmd, prog, spec, g, ns)
        with open_session(spec, fstype=g.fstype, readonly=g.readonly or not cmd.writes,
                          options=g.options, best_effort=g.best_effort) as session:
            ctx = Ctx(prog, session, verbose=g.verbose)
            _run(cmd, ctx, ns)
            status = ctx.status
        return status
    except Usage as e:
        _say(prog, str(e))
        return EXIT_TROUBLE
    except Trouble as e:
        _say(prog, str(e))
        return EXIT_TROUBLE
    except SystemExit as e:
        return int(e.code or 0)


def split_image(cmd: Any, prog: str, args: list[str], g: GlobalOpts
                ) -> tuple[str | None, list[str], bool]:
    """Find IMAGE in a command's arguments: the first argument that is neither an option nor
    an option's value.  Options before it are the command's (``fsu put -r disk.img ...``
    copies recursively), except fsu's own: ``--type``/``--fstype TYPE``, ``--read-only``,
    ``--options OPTS``, ``--verbose``, and ``-t``/``-r``/``-o``/``-v`` for the commands that do
    not use those letters themselves (so ``fsu_cat -t ext4 disk.img /x`` works, while
    ``fsu ls -t disk.img`` sorts by time).  Returns (image, the command's arguments, help?)."""
    own, takes_value = cmd.option_table(prog)
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        key, eq, val = a.partition("=")
        if a == "--":
            rest = args[i + 1:]
            return (rest[0] if rest else None), [*out, "--", *rest[1:]], False
        if a == "--help" or (a == "-h" and "-h" not in own):
            return None, out, True
        if key in ("--type", "--fstype", "--options") or (a in ("-t", "-o") and a not in own):
            if not eq:
                if i + 1 >= len(args):
                    raise Usage(f"option {a} needs an argument")
                val, i = args[i + 1], i + 1
            if key in ("--options", "-o"):
                g.options = val
            else:
                g.fstype = val
        elif a == "--read-only" or (a == "-r" and "-r" not in own):
            g.readonly = True
        elif a == "--verbose" or (a == "-v" and "-v" not in own):
            g.verbose = True
        elif a == "--best-effort":
            g.best_effort = g.readonly = True
        elif a.startswith("-") and a != "-":
            out.append(a)
            if a in takes_value and not eq and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
        else:
            return a, out + args[i + 1:], False
        i += 1
    return None, out, False


def _run_hostside(cmd: Any, prog: str, spec: Any, g: GlobalOpts, ns: Any) -> int:
    """A command that reads the host file itself (fsu parts): no kernel is booted."""
    from rumpkernel.client.files.sniff import check_image_file

    try:
        check_image_file(spec.path)
    except OSError as e:
        raise Trouble(f"{spec.path}: {e.strerror}") from None
    ctx = Ctx(prog, None, verbose=g.verbose)
    ctx.image = spec
    _run(cmd, ctx, ns)
    return ctx.status


FS_TYPES = ("ext2", "ext3", "ext4", "msdos", "vfat", "fat", "fat12", "fat16", "fat32")


def check_image_first(cmd: Any, prog: str, args: list[str], image: str,
                      cmd_args: list[str]) -> None:
    """Catch the image given in the wrong place (``fsu chown OWNER IMG PATH``): when the
    word taken as IMAGE is not an image and a later operand is one, say how it goes."""
    from rumpkernel.client.files.imagespec import parse_image_spec
    from rumpkernel.client.files.sniff import looks_like_image

    def is_image(word: str) -> bool:
        if word.startswith("-") or (word.startswith("/") and not os.path.exists(word)):
            return False
        try:
            spec = parse_image_spec(word)
        except ValueError:
            return False
        return os.path.isfile(spec.path) and looks_like_image(spec.path, spec.offset) \
            if spec.partition is None else os.path.isfile(spec.path)

    if is_image(image):
        return
    later = [w for w in cmd_args if w != "--" and is_image(w)]
    if not later:
        return
    usage = cmd.help(prog).splitlines()[0].removeprefix("usage: ")
    msg = f"IMAGE comes first: {usage}"
    i = args.index(image) if image in args else -1
    if image in FS_TYPES and i > 0 and args[i - 1] == "-t":
        msg += (f" (-t is a {cmd.name} option here; give the file system type before the "
                f"command: fsu -t {image} {cmd.name} {later[0]} ...)")
    raise Usage(msg)


def _run(cmd: Any, ctx: Ctx, ns: Any) -> None:
    import rumpkernel

    try:
        cmd.run(ctx, ns)
    except Usage:
        raise
    except OSError as e:
        ctx.err(e.filename if e.filename is not None else "", e)
    except ValueError as e:
        if "null" not in str(e):
            raise
        ctx.err("", "a name contains a NUL byte")
    except rumpkernel.KernelPanic as e:
        raise Trouble(f"kernel panic: {e}") from None
    finally:
        try:
            ctx.out.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError):
            pass
