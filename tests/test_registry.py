import pytest

from oodbench.registry import FAMILIES, Registry, UnknownNameError


def test_register_get_and_doc():
    reg: Registry = Registry("widgets")

    @reg.register("round-widget", size=3)
    def round_widget():
        """A round widget.

        More text that is not the one-line doc."""
        return 1

    assert reg.get("round-widget") is round_widget
    assert reg.meta("round-widget") == {"size": 3}
    assert [e.doc for e in reg] == ["A round widget."]
    assert "round-widget" in reg and len(reg) == 1


def test_unknown_name_suggests_closest():
    reg: Registry = Registry("widgets")
    reg.add("cifar10", object())
    reg.add("cifar100", object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("cifar-10")
    msg = str(err.value)
    assert "Did you mean 'cifar10'" in msg and "oodbench list widgets" in msg


def test_duplicate_and_bad_names_rejected():
    reg: Registry = Registry("widgets")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 2)
    for bad in ("Upper", "has space", "under_score"):
        with pytest.raises(ValueError, match="lower-case with dashes"):
            reg.add(bad, 3)


def test_lazy_entry_imports_on_first_use():
    reg: Registry = Registry("widgets")
    reg.add("join", "os.path:join", doc="lazy")
    import os.path

    assert reg.get("join") is os.path.join


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_builtin_entry_has_a_doc(family):
    reg = FAMILIES[family]
    assert len(reg) > 0
    for entry in reg:
        assert entry.doc, f"{family} {entry.name} has no one-line doc"
