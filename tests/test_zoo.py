"""Model zoo cards: validation (errors name file, line, field), local and downloaded checkpoints
pinned by sha256, lookup by name, the `paper:` block as a reference card, and `submit --card`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.leaderboard import Leaderboard
from oodbench.models import file_sha256
from oodbench.zoo import ZooCard, ZooError, find_card, list_cards, load_card, zoo_cache
from conftest import SUITE_HEADER  # noqa: E402  (tests/ is on sys.path under pytest)

REPO = Path(__file__).resolve().parents[1]
ZOO_SUITE = "name: zoo-suite\n" + SUITE_HEADER + """\
probes:
  - {{name: uniform noise, dataset: uniform-noise, n: 50}}
metrics: [test-error, mmc, auroc]
"""
PAPER = {"citation": "Someone et al., 2020, Table 1", "url": "https://arxiv.org/abs/0000.00000",
         "units": "percent", "reported": {"digits 0-4": {"test-error": 1.5, "mmc": 0.97},
                                          "uniform noise": {"auroc": 99.0}}}


def write_card(folder: Path, fields: dict, name: str = "card.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def digits_card(**fields) -> dict:
    return {"name": "digits-zoo", "arch": "digits-net", "arch_options": {"num_classes": 5}, **fields}


@pytest.fixture
def remote(tmp_path, digits_weights, monkeypatch):
    """A 'remote' checkpoint (a file:// URL outside the zoo) and an empty download cache."""
    served = tmp_path / "server" / "digits remote.safetensors"  # a space: quoted in the URL
    served.parent.mkdir()
    shutil.copy(digits_weights, served)
    monkeypatch.setenv("OODBENCH_CACHE", str(tmp_path / "cache"))
    return served


def test_repo_cards_validate_and_resolve():
    cards = list_cards(REPO / "model_zoo")
    assert cards and all(isinstance(c, ZooCard) for c in cards), cards
    digits = find_card("digits-plain", REPO / "model_zoo")
    assert digits.arch == "digits-net" and digits.arch_options == {"num_classes": 5}
    assert digits.adapter_name == "safetensors"
    assert digits.checkpoint() == REPO / "model_zoo" / "digits-plain.safetensors"  # sha verified


def test_trainer_written_card_is_a_zoo_card(digits_weights):
    """`oodbench train` writes a card beside the weights; it must load as is."""
    card = load_card(digits_weights.with_suffix(".yaml"))
    assert card.name == "digits-test" and card.recipe and card.trained_with
    assert card.checkpoint() == digits_weights and card.sha256 == file_sha256(digits_weights)


def test_download_verified_into_cache(tmp_path, remote):
    good = load_card(write_card(tmp_path / "zoo", digits_card(url=remote.as_uri(),
                                                              sha256=file_sha256(remote))))
    path = good.checkpoint()
    assert path.parent == tmp_path / "cache" / "zoo" / file_sha256(remote) == zoo_cache() / good.sha256
    assert path.name == remote.name and path.read_bytes() == remote.read_bytes()
    assert good.adapter_name == "safetensors"
    remote.unlink()  # the verified copy in the cache is used, nothing is downloaded again
    assert good.checkpoint() == path


def test_download_with_wrong_sha256_is_refused_and_deleted(tmp_path, remote):
    wrong = "0" * 64
    card_file = write_card(tmp_path / "zoo", digits_card(url=remote.as_uri(), sha256=wrong),
                           name="wrong.yaml")
    with pytest.raises(ZooError) as err:
        load_card(card_file).checkpoint()
    msg = str(err.value)
    assert str(card_file) in msg and "field `sha256`" in msg
    assert wrong in msg and file_sha256(remote) in msg and "not used" in msg
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))  # no file left to load


def test_local_weights_with_wrong_sha256_are_refused(tmp_path, digits_weights):
    shutil.copy(digits_weights, tmp_path / "w.safetensors")
    card = load_card(write_card(tmp_path, digits_card(weights="w.safetensors", sha256="a" * 64)))
    with pytest.raises(ZooError, match=r"card\.yaml:\d+: field `sha256`: .* expects a{64}"):
        card.checkpoint()
    missing = load_card(write_card(tmp_path, digits_card(weights="gone.safetensors"), "m.yaml"))
    with pytest.raises(ZooError, match=r"m\.yaml:\d+: field `weights`: .*gone.safetensors does not exist"):
        missing.checkpoint()


@pytest.mark.parametrize("fields, expected", [
    (digits_card(url="https://example.org/w.safetensors"), r"card\.yaml:1: field `card`: `url:` needs `sha256:`"),
    (digits_card(), r"`weights:` .* or `url:` \+ `sha256:`"),
    (digits_card(weights="w.pt", sha256="abc"), r"card\.yaml:6: field `sha256`: 'abc' is not a sha256"),
    (digits_card(weights="w.pt", url="ftp://x/w.pt", sha256="a" * 64), r"field `url`: .* is not a URL"),
    ({**digits_card(weights="w.pt"), "arch": "digits-nte"}, r"field `arch`: .*digits-net"),
    (digits_card(weights="w.pt", sha265="a" * 64), r"card\.yaml:6: field `sha265`: unknown field"),
    (digits_card(weights="w.pt", paper={"reported": {"x": {"auroc": "high"}}}),
     r"card\.yaml: `paper\.reported\.x\.auroc` must be a number"),
])
def test_invalid_cards_name_file_line_and_field(tmp_path, fields, expected):
    with pytest.raises(ZooError, match=expected):
        load_card(write_card(tmp_path, fields))


def test_paper_block_is_a_reference_card(tmp_path):
    from oodbench.report import load_card as load_reference

    path = write_card(tmp_path, digits_card(weights="w.pt", paper=PAPER))
    ref = load_card(path).reference()
    assert ref is not None and ref.model == "digits-zoo" and ref.paper == PAPER["citation"]
    assert ref.get("digits 0-4", "test-error") == pytest.approx(0.015)
    assert ref.get("digits 0-4", "mmc") == pytest.approx(0.97)  # MMC is never scaled
    # `report --reference` reads the card file itself
    assert load_reference(path) == ref


def test_find_card_by_name_stem_and_path(tmp_path):
    zoo = tmp_path / "zoo"
    a = write_card(zoo, digits_card(weights="w.pt"), name="file-stem.yaml")
    assert find_card("digits-zoo", zoo).source == a
    assert find_card("file-stem", zoo).source == a
    assert find_card(str(a)).source == a
    with pytest.raises(ZooError, match=r"no model card named 'digits-zo' .*did you mean digits-zoo"):
        find_card("digits-zo", zoo)
    write_card(zoo, digits_card(weights="w2.pt"), name="other.yaml")
    with pytest.raises(ZooError, match="several cards are named 'digits-zoo'"):
        find_card("digits-zoo", zoo)


def test_zoo_cli_lists_and_fetches(tmp_path, remote):
    zoo = tmp_path / "zoo"
    write_card(zoo, digits_card(url=remote.as_uri(), sha256=file_sha256(remote), paper=PAPER))
    runner = CliRunner()
    res = runner.invoke(main, ["zoo", "list", "--zoo", str(zoo)])
    assert res.exit_code == 0, res.output
    assert "digits-zoo" in res.output and "digits-net" in res.output and PAPER["url"] in res.output
    res = runner.invoke(main, ["zoo", "fetch", "digits-zoo", "--zoo", str(zoo)])
    assert res.exit_code == 0, res.output
    assert Path(res.output.strip()).read_bytes() == remote.read_bytes()
    write_card(zoo, {"name": "broken"}, name="broken.yaml")
    res = runner.invoke(main, ["zoo", "list", "--zoo", str(zoo)])
    assert res.exit_code == 1 and "digits-zoo" in res.output and "broken.yaml" in res.output


def _submit_card(runner, lb, suite, card, *extra):
    return runner.invoke(main, ["submit", "--card", str(card), "--suite", str(suite),
                                "--leaderboard", str(lb), "-q", *extra])


def test_submit_by_card_records_the_cards_model_once(tmp_path, write_suite, remote, digits_weights):
    """The entry's provenance is the card's; the same card again adds nothing."""
    zoo = tmp_path / "zoo"
    card_file = write_card(zoo, digits_card(url=remote.as_uri(), sha256=file_sha256(remote),
                                            paper=PAPER))
    suite = write_suite(ZOO_SUITE)
    lb = tmp_path / "lb.db"
    runner = CliRunner()
    res = _submit_card(runner, lb, suite, "digits-zoo", "--zoo", str(zoo))
    assert res.exit_code == 0, res.output
    assert "added entry" in res.output
    with Leaderboard(lb) as board:
        (entry,) = board.entries()
    card = load_card(card_file)
    assert entry["name"] == card.name and entry["arch"] == card.arch
    assert entry["arch_options"] == card.arch_options and entry["adapter"] == "safetensors"
    assert entry["checkpoint_sha256"] == card.sha256 and entry["paper"] == PAPER["url"]

    again = _submit_card(runner, lb, suite, card_file, "--name", "renamed")  # by path this time
    assert again.exit_code == 0 and "already on the leaderboard" in again.output
    plain = runner.invoke(main, ["submit", str(digits_weights), "--arch", "digits-net",
                                 "--arch-option", "num_classes=5", "--suite", str(suite),
                                 "--name", "same bytes", "--leaderboard", str(lb), "-q"])
    assert plain.exit_code == 0 and "already on the leaderboard" in plain.output
    with Leaderboard(lb) as board:
        assert len(board.entries()) == 1

    # through the API, on another board: --name/--paper override the card, the rest is the card's
    from oodbench.leaderboard import submit_card
    from oodbench.pipeline.suite import load_suite

    other = load_suite(write_suite(ZOO_SUITE.replace("n: 50", "n: 60"), name="other.yaml"))
    sub = submit_card(card, suite=other, name="override", paper="https://example.org/p",
                      leaderboard=lb, progress=False)
    assert sub.added and sub.checkpoint_sha256 == card.sha256
    with Leaderboard(lb) as board:
        second = next(e for e in board.entries() if e["id"] == sub.entry_id)
    assert (second["name"], second["paper"]) == ("override", "https://example.org/p")
    assert (second["arch"], second["arch_options"]) == (card.arch, card.arch_options)

    # the card is the reference of its own run: the paper's numbers beside the measured ones
    from oodbench.report import render

    table = render(entry["results_store"], fmt="md", layout="hein2019-table1", run_id=entry["run_id"],
                   references=[card_file])
    assert "paper 0.990" in table and "paper values for digits-zoo: Someone et al." in table


def test_submit_card_errors(tmp_path, write_suite, remote):
    zoo = tmp_path / "zoo"
    write_card(zoo, digits_card(url=remote.as_uri(), sha256="f" * 64))
    suite = write_suite(ZOO_SUITE)
    lb = tmp_path / "lb.db"
    runner = CliRunner()
    res = _submit_card(runner, lb, suite, "digits-zoo", "--zoo", str(zoo))
    assert res.exit_code == 2 and "field `sha256`" in res.output and "f" * 64 in res.output
    assert not lb.exists() or not Leaderboard(lb).entries()
    res = _submit_card(runner, lb, suite, "digits-zoo", "--zoo", str(zoo), "--arch", "lenet")
    assert res.exit_code == 2 and "--arch: the card defines the model" in res.output
    res = _submit_card(runner, lb, suite, "nope", "--zoo", str(zoo))
    assert res.exit_code == 2 and "no model card named 'nope'" in res.output
    res = runner.invoke(main, ["submit", "--suite", str(suite), "--leaderboard", str(lb)])
    assert res.exit_code == 2 and "either CHECKPOINT" in res.output
    res = runner.invoke(main, ["submit", str(remote), "--suite", str(suite), "--name", "x",
                               "--leaderboard", str(lb)])
    assert res.exit_code == 2 and "needs --arch" in res.output
