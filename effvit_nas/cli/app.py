"""The ``effvit-nas`` command line: the root group, its commands (one module per group) and
the error handling of :func:`main`.

Every command has ``--help``. Bad input (unknown preset, malformed YAML, invalid config, ...)
ends with one ``error: ...`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

import click

from effvit_nas.cli.arch import model_app, space_app
from effvit_nas.cli.fidelity import fidelity_cmd
from effvit_nas.cli.measure import bench
from effvit_nas.cli.predict import predict_cmd, profile_cmd
from effvit_nas.cli.proxy import proxy_cmd
from effvit_nas.cli.results import export_cmd, pareto_cmd, show_cmd, studies_cmd
from effvit_nas.cli.search import search_cmd
from effvit_nas.cli.supernet import supernet_app
from effvit_nas.cli.train import train_cmd
from effvit_nas.errors import SettingError, UserError
from effvit_nas.runtime import Terminated, sigterm_interrupts

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT, no_args_is_help=True)
def app() -> None:
    """Hardware-aware neural architecture search for EfficientViT."""


for command in (
    space_app,
    model_app,
    bench,
    profile_cmd,
    predict_cmd,
    proxy_cmd,
    fidelity_cmd,
    search_cmd,
    show_cmd,
    studies_cmd,
    pareto_cmd,
    export_cmd,
    train_cmd,
    supernet_app,
):
    app.add_command(command)

# settings whose flag is not the field name with dashes (commands rename their own, see
# effvit_nas.cli.common.setting_flags)
_FLAGS = {
    "measure_s": "--duration",
    "warmup_s": "--warmup",
    "window_s": "--window",
    "timeout_s": "--timeout",
    "heartbeat_s": "--heartbeat",
    "num_classes": "--classes",
    "source": "--data",
}


def flag_for(error: SettingError) -> str:
    """The flag that sets ``error.setting``."""
    return _FLAGS.get(error.field, "--" + error.field.replace("_", "-"))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: bad input becomes one ``error:`` line and exit status 2."""
    try:
        with sigterm_interrupts():
            rv = app.main(args=argv, prog_name="effvit-nas", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except SettingError as e:
        click.echo(f"error: {e.named(flag_for(e))}", err=True)
        sys.exit(2)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Terminated:
        click.echo("terminated (SIGTERM)", err=True)
        sys.exit(143)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a database that fails mid-command (disk full, read-only) is not a bug
        from effvit_nas.measure.store import is_storage_failure, storage_error

        if not is_storage_failure(e):
            raise
        click.echo(f"error: {storage_error(e)}", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
