"""A small, safe predicate language over annotation columns, for ``filter --drop/--keep``.

Python expression syntax, parsed with :mod:`ast` and compiled to pyarrow compute calls — never
``eval``. Supported: column names, string/number/bool/None literals, ``== != < <= > >=``,
``and or not``, ``in`` / ``not in`` with a tuple or list of literals, ``is None`` / ``is not None``,
``contains(list_column, 'value')``, ``len(list_column)``. Unknown columns and anything else are
errors raised before any data is written. A null result counts as false.

The text comes from a command line, so it is treated as hostile: its size and nesting depth are
bounded (a deep ``not not ...`` would otherwise exhaust the parser or the stack), integers must fit
int64, the whole expression and every operand of ``and``/``or``/``not`` must be a condition (so
``--drop 1`` or a quoted ``--drop "'lang == en'"`` is refused instead of dropping everything), and a
string compared with a column whose values are known (e.g. language labels) must be one of them
(``lang == 'english'`` would silently match nothing).
"""

from __future__ import annotations

import ast
import difflib
from typing import Callable, Collection


import pyarrow as pa
import pyarrow.compute as pc

from llama_audit.types import ConfigError

#: Longest expression text accepted, in characters: far above any real rule, far below what can
#: exhaust the parser (``not`` x 30000 is a MemoryError inside :func:`ast.parse`).
MAX_EXPRESSION_CHARS = 10_000
#: Deepest nesting of the syntax tree accepted; the compiler and pyarrow calls recurse per level.
MAX_EXPRESSION_DEPTH = 40
_INT64 = (-(2 ** 63), 2 ** 63 - 1)

#: For a column, the values it can hold (None: not known); see :class:`Predicate`.
Domain = Callable[[str], "Collection[str] | None"]

_CMP = {ast.Eq: pc.equal, ast.NotEq: pc.not_equal, ast.Lt: pc.less, ast.LtE: pc.less_equal,
        ast.Gt: pc.greater, ast.GtE: pc.greater_equal}


class Predicate:
    """One ``--drop``/``--keep`` rule compiled against the annotation ``schema``. ``domain(column)``
    gives the values a string column can hold where they are known (language labels), so that a
    literal outside them is an error instead of a rule that silently matches nothing."""

    def __init__(self, text: str, schema: pa.Schema, domain: Domain | None = None):
        self.text = text
        self._domain = domain or (lambda column: None)
        shown = text if len(text) <= 80 else text[:77] + "..."
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ConfigError(f"expression {shown!r} is {len(text):,} characters long; "
                              f"the limit is {MAX_EXPRESSION_CHARS:,}")
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise ConfigError(f"cannot parse expression {shown!r}: {exc.msg} at column {exc.offset}") from None
        except (RecursionError, MemoryError):
            raise ConfigError(f"expression {shown!r} is nested too deeply to parse") from None
        if _depth(tree.body) > MAX_EXPRESSION_DEPTH:
            raise ConfigError(f"expression {shown!r} is nested more than {MAX_EXPRESSION_DEPTH} levels deep")
        self.columns: set[str] = set()
        self._fn = self._compile(tree.body, schema)  # unsupported syntax is reported first
        self._require_condition(tree.body, schema)

    def _require_condition(self, node: ast.AST, schema: pa.Schema) -> None:
        """Refuse a non-condition where a condition is needed: the whole rule, and each operand of
        ``and``/``or``/``not`` (a value there would be truth-tested, e.g. ``1`` drops everything)."""
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self._require_condition(v, schema)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._require_condition(node.operand, schema)
            return
        if isinstance(node, ast.Compare):
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "contains":
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return
        if isinstance(node, ast.Name) and (node.id in ("true", "false")
                                           or (node.id in schema.names
                                               and pa.types.is_boolean(schema.field(node.id).type))):
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            raise self._error(node, f"{node.value!r} is a quoted string, not a condition "
                                    "(remove the quotes around the expression)")
        raise self._error(node, f"{ast.unparse(node)[:60]!r} is not a condition; compare it, "
                                "e.g. lang != 'en' or pii_count > 0")

    def _check_domain(self, column_node: ast.AST, values: list, node: ast.AST) -> None:
        """A string compared with a column of known values must be one of them."""
        if not isinstance(column_node, ast.Name):
            return
        known = self._domain(column_node.id)
        if not known:
            return
        for v in values:
            if isinstance(v, str) and v not in known:
                close = difflib.get_close_matches(v, sorted(known), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                examples = ", ".join(repr(x) for x in sorted(known)[:8])
                raise self._error(node, f"{column_node.id} never has the value {v!r} "
                                        f"(its {len(known)} values include {examples}, ...){hint}")

    def check(self, schema: pa.Schema) -> None:
        """Evaluate on an empty table of ``schema``: type errors surface before anything is written."""
        self(schema.empty_table())

    def __call__(self, table: pa.Table) -> pa.Array:
        """Boolean mask, nulls as False."""
        try:
            result = self._fn(table)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"expression {self.text!r} does not fit the column types ({first})") from None
        if isinstance(result, pa.Scalar) or not isinstance(result, (pa.Array, pa.ChunkedArray)):
            value = result.as_py() if isinstance(result, pa.Scalar) else result
            if not isinstance(value, bool):
                raise ConfigError(f"expression {self.text!r} is not a condition (it gives {value!r})")
            return pa.array([value] * table.num_rows, pa.bool_())
        if not pa.types.is_boolean(result.type):
            raise ConfigError(f"expression {self.text!r} is not a condition (it gives {result.type})")
        return pc.fill_null(result, False)

    def _error(self, node: ast.AST, what: str) -> ConfigError:
        return ConfigError(f"in expression {self.text!r}: {what} (column {getattr(node, 'col_offset', 0) + 1})")

    def _compile(self, node: ast.AST, schema: pa.Schema) -> Callable:
        if isinstance(node, ast.Name):
            if node.id in ("true", "True"):
                return lambda t: pa.scalar(True)
            if node.id in ("false", "False"):
                return lambda t: pa.scalar(False)
            if node.id not in schema.names:
                raise self._error(node, f"unknown column {node.id!r}; columns: {', '.join(schema.names)}")
            self.columns.add(node.id)
            name = node.id
            return lambda t: t[name]
        if isinstance(node, ast.Constant) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)):
            value = self._literal(node)
            return lambda t: pa.scalar(value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._compile(node.operand, schema)
            return lambda t: pc.invert(inner(t))
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v, schema) for v in node.values]
            op = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene

            def boolop(t):
                out = parts[0](t)
                for p in parts[1:]:
                    out = op(out, p(t))
                return out
            return boolop
        if isinstance(node, ast.Compare):
            return self._compare(node, schema)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self._call(node, schema)
        raise self._error(node, f"unsupported syntax {type(node).__name__}")

    def _literal(self, node: ast.AST) -> object:
        """The value of a literal (``-`` only before a number); integers must fit int64."""
        negate = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
        inner = node.operand if negate else node
        if not isinstance(inner, ast.Constant) or not isinstance(inner.value, (str, int, float, bool, type(None))):
            raise self._error(node, f"unsupported literal {ast.unparse(node)[:60]!r}")
        value = inner.value
        if negate:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self._error(node, f"'-' only goes before a number (got {ast.unparse(node)[:60]!r})")
            value = -value
        if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
            shown = str(value) if len(str(value)) <= 30 else str(value)[:27] + "..."
            raise self._error(node, f"integer {shown} does not fit in 64 bits")
        return value

    def _literal_list(self, node: ast.AST) -> list:
        if not isinstance(node, (ast.Tuple, ast.List)):
            raise self._error(node, "'in' takes a tuple or list of literals, e.g. lang in ('en', 'fr')")
        values = [self._literal(e) for e in node.elts]
        kinds = {type(v) for v in values if v is not None} - {bool}
        if len(kinds - {int, float}) + (1 if kinds & {int, float} else 0) > 1:
            raise self._error(node, "the values after 'in' must all be strings or all numbers")
        return values

    def _compare(self, node: ast.Compare, schema: pa.Schema) -> Callable:
        parts = []
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            parts.append(self._compare_one(left, op, right, schema))
            left = right

        def chain(t):
            out = parts[0](t)
            for p in parts[1:]:
                out = pc.and_kleene(out, p(t))
            return out
        return chain

    def _compare_one(self, left, op, right, schema) -> Callable:
        lhs = self._compile(left, schema)
        if isinstance(op, (ast.In, ast.NotIn)):
            values = self._literal_list(right)
            self._check_domain(left, values, right)
            negate = isinstance(op, ast.NotIn)

            def isin(t):
                col = lhs(t)
                mask = pc.is_in(col, value_set=pa.array(values))
                mask = pc.if_else(pc.is_null(col), pa.scalar(None, pa.bool_()), mask)
                return pc.invert(mask) if negate else mask
            return isin
        if isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)) and isinstance(right, ast.Constant) \
                and right.value is None:  # `x == None` means what `x is None` means
            if isinstance(op, (ast.Is, ast.Eq)):
                return lambda t: pc.is_null(lhs(t))
            return lambda t: pc.is_valid(lhs(t))
        if isinstance(op, (ast.Is, ast.IsNot)):
            raise self._error(right, "'is' only compares with None")
        fn = _CMP.get(type(op))
        if fn is None:
            raise self._error(right, f"unsupported operator {type(op).__name__}")
        rhs = self._compile(right, schema)
        if isinstance(right, ast.Constant):
            self._check_domain(left, [right.value], right)
        elif isinstance(left, ast.Constant):
            self._check_domain(right, [left.value], left)
        return lambda t: fn(lhs(t), rhs(t))

    def _call(self, node: ast.Call, schema: pa.Schema) -> Callable:
        name = node.func.id
        if name == "len" and len(node.args) == 1:
            arg = self._compile(node.args[0], schema)
            return lambda t: pc.list_value_length(arg(t))
        if name == "contains" and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
            arg = self._compile(node.args[0], schema)
            value = self._literal(node.args[1])
            self._check_domain(node.args[0], [value], node.args[1])

            def contains(t):
                col = arg(t)
                if isinstance(col, pa.ChunkedArray):
                    col = col.combine_chunks()
                flat = pc.list_flatten(col)
                parents = pc.list_parent_indices(col)
                hit_rows = pc.filter(parents, pc.equal(flat, pa.scalar(value)))
                mask = pc.is_in(pa.array(range(len(col)), pa.int64()), value_set=pc.unique(hit_rows).cast(pa.int64()))
                return pc.if_else(pc.is_null(col), pa.scalar(None, pa.bool_()), mask)
            return contains
        raise self._error(node, f"unknown function {name}(); use len(column) or contains(column, 'value')")


def _depth(root: ast.AST) -> int:
    """Nesting depth of a syntax tree, walked without recursion (the tree may be hostile)."""
    deepest, todo = 0, [(root, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_EXPRESSION_DEPTH:
            todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest
