"""``run --lava URL`` and ``lava export``: the command line of the LAVA executor.

The lab's settings come from the command line, else from ``[lava]`` in the user
config (:func:`harness.hosts.user_config_path`)::

    [lava]
    url = "https://lava.example.org/"
    token_file = "~/.config/cma-harness/lava-token"   # or $CMA_HARNESS_LAVA_TOKEN
    device_type = "qemu"
    tags = ["cma"]
    serve = "10.0.0.1:8765"          # serve the boot files from here, at an address the workers reach
    # artifact_url = "https://files.example.org/cma/"   # or: the files are already there, by SHA-256

The token is never taken on the command line (it would show in ``ps``).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import lava
from harness.boards import read_input_text
from harness.errors import InputError
from harness.hosts import user_config_path
from harness.lavaexec import TOKEN_ENV, LavaClient, LavaExecutor


def add_run_options(r: argparse.ArgumentParser) -> None:
    """``run``'s LAVA options (see the module docstring)."""
    g = r.add_argument_group("LAVA (instead of guests here)")
    g.add_argument("--lava", metavar="URL", help="run every cell as a job on this LAVA server")
    g.add_argument("--lava-token-file", type=Path, metavar="FILE",
                   help=f"the API token (default: ${TOKEN_ENV}, or [lava] token_file of the user config)")
    g.add_argument("--lava-serve", metavar="HOST:PORT",
                   help="serve the boot files from here at HOST:PORT (an address the workers reach)")
    g.add_argument("--lava-artifact-url", metavar="PREFIX",
                   help="the boot files are already at PREFIX<sha256> (instead of --lava-serve)")
    g.add_argument("--lava-device-type", metavar="NAME", help="LAVA device type (default qemu)")
    g.add_argument("--lava-tag", action="append", metavar="TAG", help="device tag (repeatable)")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """``lava export``'s parser; the caller adds the run selection options (matrix, kernel...)."""
    p = sub.add_parser("lava", help="LAVA: write the run's cells as LAVA job definitions")
    lsub = p.add_subparsers(dest="lava_command", required=True)
    e = lsub.add_parser("export", help="write one LAVA job definition (YAML) per cell, schema-checked")
    e.add_argument("-o", "--out-dir", type=Path, required=True, help="where to write <cell>.yaml")
    e.add_argument("--artifact-url", required=True, metavar="PREFIX",
                   help="where the workers find the boot files: PREFIX<sha256>")
    e.add_argument("--lava-device-type", metavar="NAME", help="LAVA device type (default qemu)")
    e.add_argument("--lava-tag", action="append", metavar="TAG", help="device tag (repeatable)")
    return e


def _config() -> dict[str, Any]:
    path = user_config_path()
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(read_input_text(path, "user config")).get("lava", {})
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    if not isinstance(table, dict):
        raise InputError(f"{path}: [lava] must be a table")
    return table


def settings(args: argparse.Namespace, artifact_url: str) -> lava.LavaSettings:
    """The LAVA settings of the command line over the user config's ``[lava]``."""
    config = _config()
    tags = tuple(args.lava_tag or config.get("tags", ()))
    return lava.LavaSettings(artifact_url=artifact_url,
                             device_type=args.lava_device_type or config.get("device_type", "qemu"),
                             tags=tags)


def _token(args: argparse.Namespace, config: dict[str, Any]) -> str:
    path = args.lava_token_file or (Path(str(config["token_file"])).expanduser()
                                    if "token_file" in config else None)
    if path is not None:
        token = read_input_text(Path(path), "LAVA token file").strip()
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise InputError(f"--lava: no API token: give --lava-token-file FILE, set ${TOKEN_ENV}, or "
                         "[lava] token_file in the user config")
    return token


def executor(args: argparse.Namespace, console: Console) -> LavaExecutor:
    """The :class:`LavaExecutor` of ``run --lava``'s options.

    Raises:
        InputError: no token; neither ``--lava-serve`` nor an artifact URL.
    """
    config = _config()
    url = args.lava or config.get("url", "")
    serve = args.lava_serve or ("" if args.lava_artifact_url else config.get("serve", ""))
    artifact_url = args.lava_artifact_url or config.get("artifact_url", "")
    if not serve and not artifact_url:
        raise InputError("--lava: say where the workers get the boot files: --lava-serve HOST:PORT "
                         "(served from here) or --lava-artifact-url PREFIX")
    if not url:
        raise InputError("--lava: no LAVA server URL (or [lava] url in the user config)")
    return LavaExecutor(LavaClient(url, _token(args, config)), settings(args, artifact_url), serve, console)
