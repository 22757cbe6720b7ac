"""Help output for every command: defaults shown, plain text (no reST markup), and the environment and
exit codes spelled out."""

from __future__ import annotations

import argparse
import re

__all__ = ["ENVIRONMENT_AND_EXIT", "HelpFormatter", "plain"]

ENVIRONMENT_AND_EXIT = """\
environment:
  GEMINI_API_KEY     the Gemini API key (GOOGLE_API_KEY is read when it is not set); sent only in the
                     x-goog-api-key header, never logged or written
  GEMINI_BASE_URL    the API base URL (default: Google's endpoint)
  VISIONKIT_MODEL    the model used when --model is not given
  VISIONKIT_FONT     a .ttf/.otf font for overlay labels

exit status:
  0    every image succeeded
  1    some image failed, or an output could not be written (see the summary and failures.json)
  2    usage or configuration error: nothing was labelled
  130  interrupted (Ctrl-C); rerun the same command to resume"""

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str) -> str:
    """``x`` -> x and :role:`x` -> x: docstring markup does not belong in a terminal."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (unless its help already says it) and strips reST markup."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain(action.help or "")
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) \
                or action.option_strings == [] or isinstance(action, argparse._HelpAction):
            return text
        default = ", ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) \
            else action.default
        if default in ("", []):
            return text
        return f"{text} (default: {default})".replace("%", "%%") if "%(" not in text else \
            f"{text} (default: %(default)s)"

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _format_usage(self, *args, **kwargs) -> str:
        return plain(super()._format_usage(*args, **kwargs))
