import pytest

from oodbench.core.registry import FAMILIES, Registry, UnknownNameError


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


def _defining_module(target) -> str:
    """The module a registered object (or a lazy ``"module:attr"`` entry) comes from."""
    if isinstance(target, str):
        return target.partition(":")[0]
    fn = getattr(target, "fn", None)  # a metric wraps its function
    return (fn or target).__module__


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_builtin_entry_lives_in_its_familys_folders(family):
    """A family's first lookup imports only its own folders (``Registry.packages``), so every
    built-in entry must be registered from a module there — else it would exist only after some
    other family had been looked up first."""
    reg = FAMILIES[family]
    assert reg.packages
    for entry in reg:
        module = _defining_module(entry.target)
        assert any(module == p or module.startswith(p + ".") for p in reg.packages), \
            f"{family} {entry.name} is registered in {module}, outside {reg.packages}"


def test_a_package_scan_imports_every_module_below_a_package(tmp_path, monkeypatch):
    """import_tree: every module and subpackage of a package, in file-name order; a module
    alone is just imported."""
    from oodbench.core.registry import import_tree

    pkg = tmp_path / "scanme"
    (pkg / "sub").mkdir(parents=True)
    for path in ("__init__.py", "b.py", "a.py", "sub/__init__.py", "sub/c.py"):
        (pkg / path).write_text("")
    (pkg / "notes.txt").write_text("not a module")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_tree("scanme") == ["scanme", "scanme.a", "scanme.b", "scanme.sub", "scanme.sub.c"]
    assert import_tree("scanme.b") == ["scanme.b"]
