"""Interval bound propagation (Gowal et al. 2018; GOOD, Bitterwolf et al. 2020) through a model.

A :class:`Box` holds elementwise lower and upper bounds of a tensor over a set of inputs. The
model is traced into its layers once (``torch.fx``), and each layer maps the box of its input to
a box that contains its output for *every* input of the box:

- affine layers (``Linear``, ``Conv2d``, ``BatchNorm`` in eval mode) through the centre and
  radius: ``W·c + b ± |W|·r``;
- monotone layers (``ReLU``, max/avg pooling, ``Flatten``/``view``/``reshape``, the
  normalisation layer ``(x − mean)/std`` with std > 0, dropout in eval mode) applied to both ends;
- residual additions (``a + b`` of two boxes) add the ends.

Anything else is an :class:`UnsupportedLayerError` naming the layer: a bound silently computed
through a layer it does not understand would not be a bound. The boxes are computed in the
dtype of the input box (the weights are cast to it), so a float64 box gives float64 bounds of a
float32 model without copying it.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import fx, nn

from oodbench.core.errors import OodbenchError
from oodbench.models.normalize import Normalize

SUPPORTED = ("Linear, Conv2d, ReLU, BatchNorm1d/2d (eval mode), MaxPool2d, AvgPool2d, "
             "AdaptiveAvgPool2d, AdaptiveMaxPool2d, Flatten, Identity, Dropout (eval mode), "
             "Normalize, residual additions, flatten/view/reshape")


class UnsupportedLayerError(OodbenchError, ValueError):
    """A layer interval bound propagation cannot bound; the message names it and what is supported."""


@dataclass(frozen=True)
class Box:
    """Elementwise bounds ``lower <= x <= upper`` of a tensor over a set of inputs."""

    lower: torch.Tensor
    upper: torch.Tensor

    @property
    def center(self) -> torch.Tensor:
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> torch.Tensor:
        return (self.upper - self.lower) / 2

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Box":
        """Both ends through a monotone non-decreasing (or purely structural) function."""
        return Box(fn(self.lower), fn(self.upper))

    def to(self, dtype: torch.dtype) -> "Box":
        return Box(self.lower.to(dtype), self.upper.to(dtype))


def input_box(x: torch.Tensor, eps: float, *, low: float = 0.0, high: float = 1.0) -> Box:
    """The Linf ball of radius ``eps`` around ``x`` intersected with the image domain [low, high]."""
    return Box((x - eps).clamp(low, high), (x + eps).clamp(low, high))


def _affine(box: Box, linear: Callable[..., torch.Tensor], weight: torch.Tensor,
            bias: Optional[torch.Tensor]) -> Box:
    """``linear(x, W, b)`` over the box: centre through (W, b), radius through |W|."""
    dtype = box.lower.dtype
    w = weight.to(dtype)
    mid = linear(box.center, w, None if bias is None else bias.to(dtype))
    rad = linear(box.radius, w.abs(), None)
    return Box(mid - rad, mid + rad)


def _linear(module: nn.Linear, box: Box) -> Box:
    return _affine(box, F.linear, module.weight, module.bias)


def _conv(module: nn.Conv2d, box: Box) -> Box:
    if module.padding_mode != "zeros":
        raise UnsupportedLayerError(f"certified bounds: Conv2d with padding_mode "
                                    f"{module.padding_mode!r} is not supported (only 'zeros')")

    def conv(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        return F.conv2d(x, w, b, module.stride, module.padding, module.dilation, module.groups)

    return _affine(box, conv, module.weight, module.bias)


def _batch_norm(module: nn.modules.batchnorm._BatchNorm, box: Box) -> Box:
    if module.training or module.running_mean is None or module.running_var is None:
        raise UnsupportedLayerError(
            f"certified bounds: {type(module).__name__} normalises with the statistics of the "
            "batch (training mode or no running statistics), so its output for one input depends "
            "on the others; put the model in eval mode (model.eval())")
    dtype = box.lower.dtype
    scale = (module.running_var.to(dtype) + module.eps).rsqrt()
    if module.weight is not None:
        scale = scale * module.weight.to(dtype)
    shift = -module.running_mean.to(dtype) * scale
    if module.bias is not None:
        shift = shift + module.bias.to(dtype)
    view = (1, -1) + (1,) * (box.lower.ndim - 2)
    scale, shift = scale.view(view), shift.view(view)
    mid, rad = box.center * scale + shift, box.radius * scale.abs()
    return Box(mid - rad, mid + rad)


def _relu(_module: Any, box: Box) -> Box:
    return box.map(lambda t: t.clamp_min(0))


def _monotone_module(module: nn.Module, box: Box) -> Box:
    return box.map(module)


def _dropout(module: nn.Module, box: Box) -> Box:
    if module.training:
        raise UnsupportedLayerError(f"certified bounds: {type(module).__name__} in training mode "
                                    "is random; put the model in eval mode (model.eval())")
    return box


MODULE_RULES: dict[type, Callable[[Any, Box], Box]] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.ReLU: _relu,
    nn.MaxPool2d: _monotone_module,
    nn.AvgPool2d: _monotone_module,
    nn.AdaptiveAvgPool2d: _monotone_module,
    nn.AdaptiveMaxPool2d: _monotone_module,
    nn.Flatten: _monotone_module,
    nn.Identity: _monotone_module,
    Normalize: _monotone_module,   # (x − mean) / std with every std > 0 (checked on creation)
    nn.Dropout: _dropout,
}
"""How each module type maps a box. A subclass of one of these types is not trusted to behave
like it (it may override ``forward``) and is traced into or rejected instead."""

#: Functions monotone non-decreasing in their first (tensor) argument, for fixed other arguments.
MONOTONE_FUNCTIONS: set[Any] = {torch.relu, F.relu, F.max_pool2d, F.avg_pool2d,
                                F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.flatten,
                                torch.reshape}
#: Tensor methods that are monotone or only rearrange elements.
MONOTONE_METHODS = {"relu", "flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze",
                    "permute", "transpose"}
#: Methods that read the shape only (evaluated on the lower end).
SHAPE_METHODS = {"size", "dim"}
ADDITIONS = {operator.add, operator.iadd, torch.add}


def _inner(module: nn.Module) -> Optional[nn.Module]:
    """The module a value-preserving wrapper runs (one that names it in ``bounds_through``, e.g.
    the runner's output check), or None."""
    name = getattr(type(module), "bounds_through", None)
    return getattr(module, name) if isinstance(name, str) else None


class _Tracer(fx.Tracer):
    """Keeps the layers :data:`MODULE_RULES` knows, value-preserving wrappers (and torch.nn's own
    layers) as single nodes, so an unknown torch.nn layer is reported by name instead of traced
    into its internals."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (type(m) in MODULE_RULES or _inner(m) is not None
                or super().is_leaf_module(m, module_qualified_name))


_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, fx.Graph]" = weakref.WeakKeyDictionary()


def _graph(model: nn.Module) -> fx.Graph:
    """The model's traced graph (cached per model: training bounds it at every step)."""
    graph = _GRAPHS.get(model)
    if graph is None:
        try:
            graph = _Tracer().trace(model)
        except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
            raise UnsupportedLayerError(
                f"certified bounds: {type(model).__name__} cannot be traced into its layers "
                f"({type(err).__name__}: {err}); interval bound propagation supports models "
                f"built from: {SUPPORTED}") from None
        _GRAPHS[model] = graph
    return graph


def _unsupported(node: fx.Node, what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"certified bounds: layer {node.name!r} ({what}) is not supported "
                                 f"by interval bound propagation; supported: {SUPPORTED}")


def _fetch(model: nn.Module, target: str) -> Any:
    value: Any = model
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _no_box(node: fx.Node, args: tuple, kwargs: dict) -> None:
    if any(isinstance(a, Box) for a in (*args, *kwargs.values())):
        raise _unsupported(node, f"{node.target!r} with a bounded tensor in a position other "
                           "than its first argument")


def _add(node: fx.Node, a: Any, b: Any) -> Any:
    if isinstance(a, Box) and isinstance(b, Box):
        return Box(a.lower + b.lower, a.upper + b.upper)
    if isinstance(a, Box) or isinstance(b, Box):
        box, const = (a, b) if isinstance(a, Box) else (b, a)
        return Box(box.lower + const, box.upper + const)
    return a + b


def _call_function(node: fx.Node, args: tuple, kwargs: dict) -> Any:
    fn = node.target
    kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}
    if fn in ADDITIONS and len(args) == 2 and not kwargs:
        return _add(node, *args)
    if not any(isinstance(a, Box) for a in (*args, *kwargs.values())):
        return fn(*args, **kwargs)  # shapes and constants
    if fn in MONOTONE_FUNCTIONS and isinstance(args[0], Box):
        _no_box(node, args[1:], kwargs)
        return args[0].map(lambda t: fn(t, *args[1:], **kwargs))
    if fn is operator.getitem and isinstance(args[0], Box):
        _no_box(node, args[1:], kwargs)
        return args[0].map(lambda t: t[args[1]])
    if fn is getattr and isinstance(args[0], Box) and args[1] in ("shape", "ndim", "dtype"):
        return getattr(args[0].lower, args[1])
    raise _unsupported(node, f"function {getattr(fn, '__name__', fn)}")


def _call_method(node: fx.Node, args: tuple, kwargs: dict) -> Any:
    name, this, rest = str(node.target), args[0], args[1:]
    if not isinstance(this, Box):
        _no_box(node, rest, kwargs)
        return getattr(this, name)(*rest, **kwargs)
    _no_box(node, rest, kwargs)
    if name in SHAPE_METHODS:
        return getattr(this.lower, name)(*rest, **kwargs)
    if name in MONOTONE_METHODS:
        return this.map(lambda t: getattr(t, name)(*rest, **kwargs))
    if name in ("add", "add_") and len(rest) == 1 and not kwargs:
        return _add(node, this, rest[0])
    raise _unsupported(node, f"tensor method .{name}()")


def _call_module(model: nn.Module, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    module = model.get_submodule(str(node.target))
    inner = _inner(module)
    if inner is not None and len(args) == 1 and not kwargs and isinstance(args[0], Box):
        result = propagate(inner, args[0])
        assert isinstance(result, Box)
        return result
    rule = MODULE_RULES.get(type(module))
    if rule is None:
        raise _unsupported(node, f"{type(module).__name__} at {node.target!r}")
    if len(args) != 1 or kwargs or not isinstance(args[0], Box):
        raise _unsupported(node, f"{type(module).__name__} at {node.target!r} called with "
                           "other than one bounded input")
    return rule(module, args[0])


@dataclass(frozen=True)
class HeadSplit:
    """The box of the input of the model's last layer and that layer, when the model ends in a
    ``Linear`` (the logits are then bounded with the last layer elided, as GOOD does)."""

    features: Box
    head: nn.Linear


def propagate(model: nn.Module, box: Box, *,
              split_head: bool = False) -> Union[Box, HeadSplit]:
    """Bounds of ``model``'s output over every input in ``box``. With ``split_head`` and a model
    whose output is a ``Linear`` layer's, the box of that layer's input and the layer instead (a
    model that does not end in one gives the output box).

    Differentiable in the model's parameters (GOOD trains through it). Raises
    :class:`UnsupportedLayerError` naming the first layer it cannot bound."""
    while _inner(model) is not None:
        model = _inner(model)  # type: ignore[assignment]
    rule = MODULE_RULES.get(type(model))
    if rule is not None:  # the model is a single layer (fx would trace into its functional form)
        if split_head and type(model) is nn.Linear:
            return HeadSplit(box, model)
        return rule(model, box)
    graph = _graph(model)
    env: dict[fx.Node, Any] = {}
    output: Optional[fx.Node] = None
    head_node: Optional[fx.Node] = None
    if split_head:
        (out_node,) = [n for n in graph.nodes if n.op == "output"]
        last = out_node.args[0]
        if (isinstance(last, fx.Node) and last.op == "call_module"
                and type(model.get_submodule(str(last.target))) is nn.Linear):
            head_node = last
    for node in graph.nodes:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "placeholder":
            if env:
                raise _unsupported(node, "a second model input")
            env[node] = box
        elif node.op == "get_attr":
            env[node] = _fetch(model, str(node.target))
        elif node is head_node:
            assert isinstance(args[0], Box)
            return HeadSplit(args[0], model.get_submodule(str(node.target)))
        elif node.op == "call_module":
            env[node] = _call_module(model, node, args, kwargs)
        elif node.op == "call_function":
            env[node] = _call_function(node, args, kwargs)
        elif node.op == "call_method":
            env[node] = _call_method(node, args, kwargs)
        elif node.op == "output":
            output = node
            result = args[0]
            if not isinstance(result, Box):
                raise _unsupported(node, "a model output that is not one tensor")
            return result
    raise AssertionError(f"graph without output: {output}")  # pragma: no cover
