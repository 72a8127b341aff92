"""Escaping of user strings (model, probe and suite names, descriptions) for each output format.

Every string that reaches a template goes through one of these, by construction: the LaTeX and
Markdown environments apply them as Jinja2 ``finalize`` hooks to every ``<< … >>`` / ``{{ … }}``
expression, and the HTML environment uses Jinja2's autoescape. Template markup that must reach
the output verbatim is written literally in the template, never passed in as a value.
"""

from __future__ import annotations

import re

# The ten characters LaTeX treats specially in text, plus three that the default OT1 font
# encoding prints as other glyphs (< > |), each mapped to a command that typesets the character.
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "%": r"\%",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}

# Non-ASCII symbols that turn up in names (threat models, differences, arrows) and that
# pdflatex's default UTF-8 input does not know; other non-ASCII characters pass through.
LATEX_UNICODE = {
    "\u2212": r"\ensuremath{-}",  # minus sign (used for differences to the paper)
    "\u00b1": r"\ensuremath{\pm}",
    "\u00d7": r"\ensuremath{\times}",
    "\u2264": r"\ensuremath{\leq}",
    "\u2265": r"\ensuremath{\geq}",
    "\u221e": r"\ensuremath{\infty}",
    "\u2191": r"\ensuremath{\uparrow}",
    "\u2020": r"\ensuremath{^\dagger}",  # dagger: a row flagged by a trust check
    "\u2193": r"\ensuremath{\downarrow}",
    "\u0394": r"\ensuremath{\Delta}",
    "\u03b1": r"\ensuremath{\alpha}",
    "\u03b2": r"\ensuremath{\beta}",
    "\u03b3": r"\ensuremath{\gamma}",
    "\u03b4": r"\ensuremath{\delta}",
    "\u03b5": r"\ensuremath{\varepsilon}",
    "\u03bb": r"\ensuremath{\lambda}",
    "\u03bc": r"\ensuremath{\mu}",
    "\u03c3": r"\ensuremath{\sigma}",
    "\u2113": r"\ensuremath{\ell}",
    "\u2013": "--",
    "\u2014": "---",
}

_LATEX_MAP = {**LATEX_SPECIALS, **LATEX_UNICODE, "\n": " ", "\r": " ", "\t": " "}


def latex_escape(text: object) -> str:
    """``text`` as LaTeX source that typesets exactly ``text`` (in a text-mode context).

    One pass over the characters, so an escape is never escaped again. Newlines become spaces (a
    blank line would end a ``\\caption``); ``--`` is kept from turning into a dash ligature.
    """
    s = str(text)
    return "".join("-{}" if ch == "-" and s[i + 1:i + 2] == "-" else _LATEX_MAP.get(ch, ch)
                   for i, ch in enumerate(s))


# Characters with a meaning in GitHub-flavoured Markdown tables and inline markup.
_MD_TABLE = str.maketrans({**{c: "\\" + c for c in "\\`*_[]|#~"},
                           "<": "&lt;", ">": "&gt;", "\n": " ", "\r": " "})


def md_escape(text: object) -> str:
    """``text`` as Markdown that renders as the literal text, also inside a table cell."""
    return str(text).translate(_MD_TABLE)


def latex_label(text: str) -> str:
    """A ``\\label`` key from free text: letters, digits and ``-:.`` only."""
    return re.sub(r"[^A-Za-z0-9:.-]+", "-", text).strip("-") or "table"
