"""Grouped, seeded train/test splits: no task on both sides."""
from instructlib.data import Instance, Record, Task
from instructlib.data.splits import split_by_task


def records():
    return [Record(f"Task number {t}.", f"input {k}", "x") for t in range(10) for k in range(3)]


def test_no_task_leaks_and_sizes():
    train, test = split_by_task(records(), test_fraction=0.3, seed=0)
    assert len(train) + len(test) == 30
    assert {r.instruction for r in train}.isdisjoint({r.instruction for r in test})
    assert len({r.instruction for r in test}) == 3
    assert sorted(map(repr, train + test)) == sorted(map(repr, records()))


def test_seeded_and_independent_of_input_order():
    a = split_by_task(records(), 0.3, seed=1)
    assert a == split_by_task(records(), 0.3, seed=1)
    assert {r.instruction for r in split_by_task(records()[::-1], 0.3, seed=1)[1]} == {r.instruction for r in a[1]}
    seeds = {frozenset(r.instruction for r in split_by_task(records(), 0.3, seed=s)[1]) for s in range(5)}
    assert len(seeds) > 1


def test_tasks_group_by_id_and_custom_key_and_edges():
    tasks = [Task(f"Do {k}.", [Instance("", "x")], id=f"t{k}", category="qa" if k % 2 else "math") for k in range(4)]
    train, test = split_by_task(tasks, 0.5, seed=0)
    assert len(train) == len(test) == 2 and not {t.id for t in train} & {t.id for t in test}
    train, test = split_by_task(tasks, 0.5, seed=0, key=lambda t: t.category)
    assert {t.category for t in train} != {t.category for t in test} and len(test) == 2
    assert len(split_by_task(tasks, 0.01, seed=0)[1]) == 1  # each side keeps at least one group
    assert len(split_by_task(tasks, 0.99, seed=0)[0]) == 1
    assert split_by_task(tasks, 0.0, seed=0)[1] == []
