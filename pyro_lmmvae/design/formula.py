"""The formula: the lme4-style one-sided formula read into fixed and random terms.

:func:`_strip_formula` checks that the formula is one-sided, :func:`_random_parts` finds its
random terms, ``(expr | factor)`` (correlated) and ``(expr || factor)`` (uncorrelated), and
:class:`_FormulaTerms` (a base of :class:`~pyro_lmmvae.design.Design`) parses the rest with
formulae: the fixed terms in R's order (main effects before interactions), the grouping factor,
the covariates the formula uses and the blocks of correlated random-effect columns.
"""

from __future__ import annotations

import re

from formulae import model_description
from formulae.parser import ParseError

from pyro_lmmvae.gp.bases import check_basis_arguments

_NUMBER_HINT = (
    "formulae reads numbers in plain decimal notation only: write 10.0 rather than '10.' and "
    "keep values above about 1e-4 (it prints smaller ones as 1e-05 and cannot read them back); "
    "rescale the column instead"
)
#: Numbers formulae may misread: '10.' (no digit after the point) or exponent notation.
_NUMBER_LIKE = re.compile(r"\d\.(?!\d)|\d[eE][-+]?\d")
_EMPTY_FORMULAS = {"", "0", "-1", "0 +", "+ 0"}


def _strip_formula(formula: str) -> str:
    text = formula.strip()
    if "~" in text:
        lhs, _, rhs = text.partition("~")
        if lhs.strip():
            raise ValueError(
                f"formula {formula!r} has a response {lhs.strip()!r} on the left of '~'; "
                "the latent prior formula is one-sided: pass the observations as y= instead"
            )
        text = rhs.strip()
    return text


def _random_parts(rhs: str) -> list[tuple[str, bool, str]]:
    """The top-level ``(expr | factor)`` and ``(expr || factor)`` terms of a formula's right side.

    Returns ``(expr, correlated, factor)`` per term, in order; nested parentheses (basis calls)
    inside ``expr`` are kept whole.
    """
    parts, depth, start = [], 0, None
    for i, char in enumerate(rhs):
        if char == "(":
            if depth == 0:
                start = i
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                inner = rhs[start + 1 : i]
                bar = _top_level_bar(inner)
                if bar is not None:
                    double = inner[bar : bar + 2] == "||"
                    expr = inner[:bar].strip()
                    factor = inner[bar + (2 if double else 1) :].strip()
                    parts.append((expr, not double, factor))
    return parts


def _top_level_bar(text: str) -> int | None:
    depth = 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if char == "|" and depth == 0:
            return i
    return None


def _variables(term) -> set[str]:
    return {name for name in getattr(term, "var_names", set()) if name}


class _FormulaTerms:
    """Parsing of :attr:`formula` for :class:`~pyro_lmmvae.design.Design` (a base class)."""

    # ------------------------------------------------------------------ parsing
    def _parse(self) -> None:
        self._fixed_rhs: str | None
        self._random_rhs: str | None = None
        self.group_factor = None
        self._variables: set[str] = set()
        if self._rhs in _EMPTY_FORMULAS:
            self._fixed_rhs = None
            return
        try:
            desc = model_description(self._rhs)
        except Exception as err:  # formulae raises several parser error types
            numbers = _NUMBER_LIKE.search(self._rhs) is not None
            hint = f"; {_NUMBER_HINT}" if isinstance(err, ParseError) and numbers else ""
            raise ValueError(f"cannot parse formula {self.formula!r}: {err}{hint}") from err
        check_basis_arguments(desc, self.formula)
        factors = {str(term.factor.name) for term in desc.group_terms}
        if len(factors) > 1:
            raise ValueError(
                f"formula {self.formula!r} groups random effects by {sorted(factors)}; "
                "one grouping factor (the instance) is supported"
            )
        explicit_no_intercept = re.search(r"(^|[+\s(])(0|-\s*1)\s*(\+|$)", self._fixed_part())
        # Main effects before interactions, as R orders a model's terms (keep.order = FALSE);
        # formulae also needs a factor's main effect before its interactions to encode them.
        # Designs of 0.2 ("inputs") kept the written order.
        ordered = list(desc.common_terms)
        if self.scaling == "columns":
            ordered.sort(key=lambda t: len(getattr(t, "components", ())))
        fixed_names = [self._term_source(t) for t in ordered]
        has_intercept = "1" in fixed_names
        fixed_names = [n for n in fixed_names if n != "1"]
        if has_intercept or not explicit_no_intercept:
            if not has_intercept and not fixed_names:
                self._fixed_rhs = None
            else:
                self._fixed_rhs = " + ".join(["1" if has_intercept else "0", *fixed_names])
        else:
            self._fixed_rhs = " + ".join(["0", *fixed_names]) if fixed_names else None
        for term in desc.common_terms:
            self._variables |= _variables(term)
        if desc.group_terms:
            self.group_factor = factors.pop()
            expr_names = [self._term_source(t.expr) for t in desc.group_terms]
            has_re_intercept = "1" in expr_names
            rest = [n for n in expr_names if n != "1"]
            self._random_rhs = " + ".join(["1" if has_re_intercept else "0", *rest])
            for term in desc.group_terms:
                self._variables |= _variables(term.expr)

    def _fixed_part(self) -> str:
        return re.sub(r"\([^()]*\|[^()]*\)", "", self._rhs)

    @staticmethod
    def _term_source(term) -> str:
        if type(term).__name__ == "Intercept":
            return "1"
        return str(term.name)

    def _blocks(self) -> tuple[tuple[int, ...], ...]:
        """Column indices of each block of correlated random terms (lme4's semantics).

        ``(1 + t | id)`` is one block of correlated terms; ``(1 + t || id)`` and
        ``(1 | id) + (0 + t | id)`` give one block per term.
        """
        if self._random_encoder is None:
            return ()
        slices = self._random_encoder.slices
        blocks: list[tuple[int, ...]] = []
        seen: set[str] = set()
        for expr, correlated, factor in self._random_parts:
            desc = model_description(f"({expr} | {factor})")
            names = ["Intercept" if self._term_source(t.expr) == "1" else str(t.expr.name)
                     for t in desc.group_terms]  # fmt: skip
            repeated = seen.intersection(names)
            if repeated:
                raise ValueError(
                    f"formula {self.formula!r} has the random term(s) {sorted(repeated)} for "
                    f"{factor!r} twice; give each term once"
                )
            seen.update(names)
            columns = [list(range(slices[n].start, slices[n].stop)) for n in names]
            if correlated:
                blocks.append(tuple(c for cols in columns for c in cols))
            else:
                blocks.extend(tuple(cols) for cols in columns)
        covered = sorted(c for b in blocks for c in b)
        if covered != list(range(self.n_random)):  # a layout formulae did not expand as read
            return tuple((j,) for j in range(self.n_random))
        return tuple(sorted(blocks))
