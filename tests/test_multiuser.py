"""Multi-user safety: interventions are per request. Nine threads share one model; eight steer it each with their
own vector (as a SteeringVector or as an exported bundle through ``load_into``), one does not steer. Every thread
must generate exactly the tokens it generates alone. The app serves each browser session from its own script
thread with the same hook sessions, so this is the app's guarantee too."""

from __future__ import annotations

import threading

import pytest
import torch

from steering.bundle import Bundle
from steering.export import load_into
from steering.vector import SteeringVector
from workbench.models import tiny_model

PROMPTS = ["The cat sat on", "Once upon a time"]
N_STEERED = 8
MAX_NEW = 8


@pytest.fixture(scope="module")
def lm():
    return tiny_model()


def vectors(lm) -> list[SteeringVector]:
    gen = torch.Generator().manual_seed(123)
    sites = ["resid_post.0", "resid_post.1", "resid_pre.1", "mlp_out.0"]
    return [SteeringVector(4.0 * torch.randn(lm.d_model, generator=gen), sites[i % len(sites)],
                           scope=("all", "generated", "prompt", "last")[i % 4], model_fingerprint=lm.fingerprint)
            for i in range(N_STEERED)]


def generate(lm, user: int | None, vecs: list[SteeringVector]) -> list[list[int]]:
    """User ``None`` does not steer; even users use SteeringVector.apply, odd ones an exported bundle."""
    batch = lm.tokenize(PROMPTS)

    def run():
        with torch.no_grad():
            out = lm.model.generate(**batch, max_new_tokens=MAX_NEW, do_sample=False,
                                    pad_token_id=lm.tokenizer.pad_token_id)
        return out[:, batch["input_ids"].shape[1]:].tolist()

    if user is None:
        return run()
    vec = vecs[user]
    session = vec.apply(lm) if user % 2 == 0 else load_into(lm.model, Bundle.from_vector(vec, lm))
    with session:
        return run()


def test_concurrent_users_get_exactly_their_own_steering(lm):
    vecs = vectors(lm)
    users: list[int | None] = [None, *range(N_STEERED)]
    alone = {user: generate(lm, user, vecs) for user in users}
    # the steering must matter, or this test proves nothing
    assert sum(alone[u] != alone[None] for u in range(N_STEERED)) >= N_STEERED - 1

    results: dict[tuple[int, int | None], list[list[int]]] = {}
    errors: list[BaseException] = []
    rounds = 2
    barrier = threading.Barrier(len(users))

    def worker(user: int | None) -> None:
        try:
            for r in range(rounds):
                barrier.wait(timeout=60)
                results[(r, user)] = generate(lm, user, vecs)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for r in range(rounds):
        for user in users:
            assert results[(r, user)] == alone[user], f"user {user} (round {r}) was affected by another thread"
    # and nothing is left attached to the shared model
    assert generate(lm, None, vecs) == alone[None]


def test_handle_attached_in_one_thread_does_not_leak(lm):
    vec = vectors(lm)[0]
    plain = generate(lm, None, [vec])
    handle = vec.patch(lm)
    try:
        seen: list = []
        t = threading.Thread(target=lambda: seen.append(generate(lm, None, [vec])))
        t.start()
        t.join()
        assert seen == [plain]
        assert generate(lm, None, [vec]) != plain  # this thread is steered
    finally:
        handle.remove()
    assert generate(lm, None, [vec]) == plain
