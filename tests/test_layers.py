"""Unit tests of echod.layers."""

from __future__ import annotations

from echod.layers import MAX_LAYERS, layers


class Layer:
    def __init__(self, transport: object = None) -> None:
        self.transport = transport


def test_each_layer_down_to_the_last() -> None:
    bottom = object()  # a socket transport: no transport of its own
    middle = Layer(bottom)
    top = Layer(middle)
    assert list(layers(top)) == [top, middle, bottom]
    assert list(layers(None)) == []


def test_no_deeper_than_echod_stacks() -> None:
    deep: object = None
    for _ in range(10):
        deep = Layer(deep)
    assert len(list(layers(deep))) == MAX_LAYERS
