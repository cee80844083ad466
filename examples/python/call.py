#!/usr/bin/env python3
"""Places one call through wakeline's generated Python bindings (UniFFI).

    scripts/bindings.sh
    python3 examples/python/call.py 'sip:bob@127.0.0.1:5070;transport=tcp' --duration 3 --tone 440

Plays a tone to the far end, hangs up after --duration seconds of talk, prints every event and
exits 0 when the call was answered and then ended normally (1 otherwise, 2 on bad arguments).
With --activate-after S the call runs its audio session the CallKit way: placed with
call_with(manual_audio_session=True), its tone starts only when audio_session_activated() is
called, S seconds after the answer (RTP carries silence until then).
The bindings are looked for in $WAKELINE_BINDINGS, else target/bindings/python of this checkout.
"""

import argparse
import os
import queue
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(
    0,
    os.environ.get(
        "WAKELINE_BINDINGS", os.path.join(HERE, "..", "..", "target", "bindings", "python")
    ),
)

import wakeline_ffi as wl  # noqa: E402  (the path is set just above)


class Listener(wl.EventListener):
    """Hands each event to the main thread (events arrive on the user agent's own thread)."""

    def __init__(self):
        self.events = queue.Queue()

    def on_event(self, event):
        self.events.put(event)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("uri", help="who to call, e.g. sip:bob@127.0.0.1:5070;transport=tcp")
    p.add_argument("--duration", type=float, default=5.0, help="seconds to talk once answered")
    p.add_argument("--tone", type=float, default=440.0, help="the tone we send, in Hz")
    p.add_argument("--speaker", default="null", help="the far end's audio: null|FILE.wav")
    p.add_argument("--timeout", type=float, default=30.0, help="give up waiting for an answer")
    p.add_argument(
        "--activate-after",
        type=float,
        help="manual audio session: activate it this many seconds after the answer",
    )
    args = p.parse_args()
    if args.tone <= 0 or args.duration < 0 or (args.activate_after or 0) < 0:
        p.error("--tone must be positive, --duration and --activate-after not negative")

    listener = Listener()
    media = wl.MediaConfig(mic=f"tone:{args.tone:g}", speaker=args.speaker)
    ua = wl.UserAgent(wl.UaConfig(media=media), listener)
    try:
        if args.activate_after is None:
            call = ua.call(args.uri)
        else:
            media.manual_audio_session = True
            call = ua.call_with(args.uri, media)
    except wl.WakelineError as e:
        print(f"cannot call {args.uri}: {e}", file=sys.stderr)
        return 2

    activate_at = None  # when the manual audio session is due (CallKit's didActivate)
    answered_at = None
    hangup_at = time.monotonic() + args.timeout  # no answer by then: give up
    give_up_at = None  # set when we hang up: the call must end within 10 s of that
    ended = None
    while ended is None:
        now = time.monotonic()
        if activate_at is not None and now >= activate_at:
            activate_at = None
            try:
                call.audio_session_activated()
                print("audio session activated", flush=True)
            except wl.WakelineError as e:  # the call may have ended meanwhile
                print(f"audio_session_activated: {e}", file=sys.stderr)
        if give_up_at is None and now >= hangup_at:
            if answered_at is None:
                print(f"no answer within {args.timeout:g} s; hanging up", file=sys.stderr)
            try:
                call.hangup()
            except wl.WakelineError as e:  # it may have ended at this very moment
                print(f"hangup: {e}", file=sys.stderr)
            give_up_at = now + 10.0
        if give_up_at is not None and now >= give_up_at:
            print("the call did not end after hanging up", file=sys.stderr)
            break
        wait = (give_up_at if give_up_at is not None else hangup_at) - now
        if activate_at is not None:
            wait = min(wait, activate_at - now)
        try:
            event = listener.events.get(timeout=max(wait, 0.01))
        except queue.Empty:
            continue
        print(event, flush=True)
        if getattr(event, "call", None) != call.id():
            continue
        if event.is_state() and event.state == wl.CallState.CONNECTED and answered_at is None:
            answered_at = time.monotonic()
            hangup_at = answered_at + args.duration
            if args.activate_after is not None:
                activate_at = answered_at + args.activate_after
        elif event.is_ended():
            ended = event
    ua.shutdown()
    ok = (
        ended is not None
        and answered_at is not None
        and ended.outcome == wl.CallOutcome.ANSWERED
    )
    print("call answered and ended normally" if ok else f"call failed: {ended}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
