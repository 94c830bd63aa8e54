"""The polling schedule (worker.flow.schedule), a pure function: properties over what is known."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.flow.schedule import (
    CALLBACK_LAG,
    FASTEST,
    Known,
    Pace,
    first_check,
    next_check,
    queue_basis,
)

NOW = 1_700_000_000.0
SAFETY = Pace(fallback_s=60.0, max_wait_s=60.0, min_gap_s=1.0)        # callbacks trusted
PROFILE = Pace(fallback_s=10.0, max_wait_s=60.0, min_gap_s=1.0)       # polling at the profile's pace
TRUSTED = Pace(fallback_s=60.0, max_wait_s=60.0, min_gap_s=1.0, quiet_s=10.0)  # as pacing builds it

typical = st.floats(min_value=5.0, max_value=600.0)
fraction = st.floats(min_value=0.05, max_value=0.99)
callbacks = st.booleans()


@given(typical, st.integers(min_value=80, max_value=99), callbacks)
def test_a_quiet_task_near_its_end_is_checked_within_seconds(run_s, pct, cb):
    # progress seen when it changed (a callback), then silence
    started = NOW - run_s * pct / 100
    at = next_check(Known(now=NOW, typical_s=run_s, started_at=started, progress=pct,
                          progress_at=NOW, progress_exact=True, callbacks=cb), SAFETY)
    remaining = run_s * (100 - pct) / 100
    assert NOW + 1.0 <= at <= NOW + remaining + 0.2 * run_s + 1e-6
    assert at - NOW <= 0.35 * run_s + 1.0       # a 30 s imagine at 93 %: ~6.6 s


@given(typical, st.integers(min_value=3, max_value=40), st.integers(min_value=1, max_value=12),
       callbacks)
def test_a_queued_task_is_not_checked_before_it_could_have_finished(run_s, ahead, slots, cb):
    at = next_check(Known(now=NOW, typical_s=run_s, queued_ahead=ahead, slots=slots,
                          callbacks=cb), Pace(fallback_s=10, max_wait_s=1e9, min_gap_s=1))
    rounds = ahead // slots + 1
    assert at >= NOW + rounds * FASTEST * run_s - 1e-6
    # and the deeper in the queue, the later
    deeper = next_check(Known(now=NOW, typical_s=run_s, queued_ahead=ahead + slots, slots=slots,
                              callbacks=cb), Pace(fallback_s=10, max_wait_s=1e9, min_gap_s=1))
    assert deeper > at


def test_a_task_queued_behind_8_others_waits_until_it_could_have_started():
    at = next_check(Known(now=NOW, typical_s=30.0, queued_ahead=8, slots=3, callbacks=False),
                    PROFILE)
    assert at - NOW >= 2 * 30.0 * FASTEST           # two rounds of 3 must finish first


@given(st.one_of(st.none(), typical))
def test_a_silent_upstream_is_polled_at_the_profiles_pace(run_s):
    # nothing known about the task: callbacks trusted -> the safety net; lost -> the pace
    trusted = next_check(Known(now=NOW, typical_s=run_s, callbacks=True), SAFETY)
    silent = next_check(Known(now=NOW, typical_s=run_s, callbacks=False), PROFILE)
    assert trusted == NOW + 60.0
    assert silent == NOW + 10.0


@given(typical, fraction, st.booleans(), st.booleans(), st.integers(0, 100))
def test_always_within_the_pace_bounds(run_s, done, cb, exact, pct):
    pace = Pace(fallback_s=10.0, max_wait_s=45.0, min_gap_s=0.5)
    started = NOW - run_s * done
    at = next_check(Known(now=NOW, typical_s=run_s, started_at=started, progress=pct,
                          progress_at=NOW - 1, progress_exact=exact, callbacks=cb), pace)
    assert NOW + 0.5 <= at <= NOW + 45.0


@given(typical, st.floats(min_value=1.0, max_value=3.0))
def test_an_overdue_task_is_checked_again_soon(run_s, late):
    started = NOW - run_s * late                   # it should have finished long ago
    at = next_check(Known(now=NOW, typical_s=run_s, started_at=started, callbacks=False),
                    Pace(fallback_s=10.0, max_wait_s=600.0, min_gap_s=0.1))
    assert at <= NOW + 0.1 * run_s + 0.1


@given(typical, st.floats(min_value=0.0, max_value=1e4))
def test_checks_align_to_a_resellers_refresh(run_s, offset):
    grid = Pace(fallback_s=15.0, max_wait_s=60.0, min_gap_s=15.0, grid_s=15.0)
    at = next_check(Known(now=NOW + offset, typical_s=run_s, started_at=NOW + offset - 1,
                          callbacks=False), grid)
    assert abs(at / 15.0 - round(at / 15.0)) < 1e-6
    assert at >= NOW + offset + 15.0


def test_the_estimate_follows_progress_not_only_the_typical_run():
    # a task running twice as slow as usual: at 50 % after 60 s it ends at ~120 s, not 60 s
    k = Known(now=NOW, typical_s=60.0, started_at=NOW - 60, progress=50, progress_at=NOW,
              progress_exact=True, callbacks=False)
    assert next_check(k, PROFILE) > NOW + 20
    fast = Known(now=NOW, typical_s=60.0, started_at=NOW - 60, progress=95, progress_at=NOW,
                 progress_exact=True, callbacks=False)
    assert next_check(fast, PROFILE) < NOW + 10


@given(st.one_of(st.none(), typical))
def test_first_check_without_callbacks(run_s):
    at = first_check(NOW, run_s, PROFILE, callbacks=False)
    if run_s is None:
        assert at == NOW + PROFILE.fallback_s
    else:
        assert at == min(NOW + max(FASTEST * run_s, 1.0), NOW + 60.0)


@given(st.one_of(st.none(), typical))
def test_a_task_that_runs_at_once_is_looked_at_when_its_callbacks_are_overdue(run_s):
    # callbacks trusted, not queued. Nothing known, or a task long enough to show progress
    # first: after the profile's pace (the first silent task of an upstream is found within
    # seconds, not at the safety net); any callback pushes this back. A short one (an
    # upscale, no progress): once even its slowest run's final callback is overdue, so a
    # check does not race the callback that would have made it needless.
    at = first_check(NOW, run_s, TRUSTED, callbacks=True)
    if run_s is None or FASTEST * run_s > TRUSTED.quiet_s:
        assert at == NOW + TRUSTED.quiet_s
    else:
        assert NOW + (2 - FASTEST + CALLBACK_LAG) * run_s - 1e-6 <= at <= NOW + 60.0
        assert at == NOW + 60.0 or at == NOW + (2 - FASTEST + CALLBACK_LAG) * run_s
    # without the profile's pace (quiet_s 0) the safety net stays the bound
    assert first_check(NOW, run_s, SAFETY, callbacks=True) == NOW + 60.0


@given(typical, st.integers(min_value=0, max_value=40))
def test_a_queued_task_is_first_looked_at_late(run_s, ahead):
    # with callbacks: the safety net (no callback comes while it waits; a poll that finds
    # them lost re-plans it); without: when it could first have finished, as any other
    # (the tasks ahead may be much shorter than its own run: upscales ahead of an imagine)
    assert first_check(NOW, run_s, TRUSTED, callbacks=True, queued_ahead=ahead) == NOW + 60.0
    assert first_check(NOW, None, TRUSTED, callbacks=True, queued_ahead=ahead) == NOW + 60.0
    lost = Pace(fallback_s=10.0, max_wait_s=1e9, min_gap_s=1.0)
    assert first_check(NOW, run_s, lost, callbacks=False, queued_ahead=ahead) == \
        first_check(NOW, run_s, lost, callbacks=False) == NOW + max(1.0, FASTEST * run_s)


@given(st.floats(min_value=0.0, max_value=600.0), st.booleans())
def test_a_running_task_nothing_is_known_of_is_looked_at_at_the_profiles_pace(age, cb):
    # a poll saw it running, but no run time is known and no progress: with callbacks
    # trusted the profile's pace (they should have told something by then), not the safety
    # net; a queued one waits for the safety net; without callbacks the profile's pace too
    running = Known(now=NOW, started_at=NOW - age, callbacks=cb)
    assert next_check(running, TRUSTED if cb else PROFILE) == NOW + 10.0
    queued = Known(now=NOW, queued_ahead=2, callbacks=True)
    assert next_check(queued, TRUSTED) == NOW + 60.0


@given(st.lists(typical, min_size=1, max_size=4), st.integers(min_value=0, max_value=20),
       callbacks)
def test_a_queued_task_of_an_action_not_seen_yet_waits_one_round_of_the_quickest(known, ahead,
                                                                                 cb):
    # e.g. the first upscales queued behind imagines: not looked at every 10 s while they
    # wait, nor later than the quickest known task could run
    assert queue_basis(7.5, known, ahead) == (7.5, ahead)     # its own action's run, once known
    assert queue_basis(None, [], ahead) == (None, 0)
    run_s, place = queue_basis(None, known, ahead)
    assert (run_s, place) == (min(known), 0)
    wide = Pace(fallback_s=10.0, max_wait_s=1e9, min_gap_s=1.0)
    at = next_check(Known(now=NOW, typical_s=run_s, queued_ahead=place, callbacks=cb), wide)
    assert at == NOW + max(1.0, FASTEST * min(known))
