"""A small, safe predicate language over annotation columns, for ``filter --drop/--keep``.

Python expression syntax, parsed with :mod:`ast` and compiled to pyarrow compute calls — never
``eval``. Supported: column names, string/number/bool/None literals, ``== != < <= > >=``,
``and or not``, ``in`` / ``not in`` with a tuple or list of literals, ``is None`` / ``is not None``,
``contains(list_column, 'value')``, ``len(list_column)``. Unknown columns and anything else are
errors raised before any data is written. A null result counts as false.
"""

from __future__ import annotations

import ast
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from llama_audit.types import ConfigError

_CMP = {ast.Eq: pc.equal, ast.NotEq: pc.not_equal, ast.Lt: pc.less, ast.LtE: pc.less_equal,
        ast.Gt: pc.greater, ast.GtE: pc.greater_equal}


class Predicate:
    def __init__(self, text: str, schema: pa.Schema):
        self.text = text
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise ConfigError(f"cannot parse expression {text!r}: {exc.msg} at column {exc.offset}") from None
        self.columns: set[str] = set()
        self._fn = self._compile(tree.body, schema)

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
            return pa.array([bool(value)] * table.num_rows, pa.bool_())
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
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (str, int, float, bool, type(None))):
                raise self._error(node, f"unsupported literal {node.value!r}")
            value = node.value
            return lambda t: pa.scalar(value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._compile(node.operand, schema)
            return lambda t: pc.invert(inner(t))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            value = -node.operand.value
            return lambda t: pa.scalar(value)
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

    def _literal_list(self, node: ast.AST) -> list:
        if not isinstance(node, (ast.Tuple, ast.List)) or not all(isinstance(e, ast.Constant) for e in node.elts):
            raise self._error(node, "'in' takes a tuple or list of literals, e.g. lang in ('en', 'fr')")
        return [e.value for e in node.elts]

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
        return lambda t: fn(lhs(t), rhs(t))

    def _call(self, node: ast.Call, schema: pa.Schema) -> Callable:
        name = node.func.id
        if name == "len" and len(node.args) == 1:
            arg = self._compile(node.args[0], schema)
            return lambda t: pc.list_value_length(arg(t))
        if name == "contains" and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
            arg = self._compile(node.args[0], schema)
            value = node.args[1].value

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
