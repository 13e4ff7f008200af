"""The dev phone runs every TwiML verb the product uses, as Twilio would.

The app side here is a table of canned TwiML documents behind the transport (the lowest
HTTP layer); what is checked is what the simulator posts back and when.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import redis
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from interphone.devtools.devphone.phone import DevPhone, TwimlError

TOKEN = "engine-test-token"
BASE = "https://interphone.example.org"


class App:
    """Canned answers by path; every request is recorded, and its signature checked."""

    def __init__(self, routes: dict[str, Callable[[dict[str, str]], str]]) -> None:
        self.routes = routes
        self.posts: list[tuple[str, dict[str, str]]] = []

    def __call__(self, path: str, form: dict[str, str], headers: dict[str, str]):
        assert RequestValidator(TOKEN).validate(BASE + path, form, headers["X-Twilio-Signature"])
        self.posts.append((path, dict(form)))
        route = self.routes.get(urlsplit(path).path)
        return (200, route(form)) if route else (204, "")

    def last(self, path: str) -> dict[str, str]:
        return [form for p, form in self.posts if urlsplit(p).path == path][-1]


def phone(app: App, connection: redis.Redis | None = None) -> DevPhone:
    return DevPhone(
        app,
        public_base_url=BASE,
        auth_token=TOKEN,
        account_sid="AC" + "0" * 32,
        connection=connection,
    )


def twiml(build: Callable[[VoiceResponse], object]) -> Callable[[dict[str, str]], str]:
    def answer(_: dict[str, str]) -> str:
        response = VoiceResponse()
        build(response)
        return str(response)

    return answer


def test_speech_gather_posts_what_the_caller_said() -> None:
    app = App(
        {
            "/voice/incoming": twiml(
                lambda r: r.gather(input="speech", action="/said", language="ko-KR").say(
                    "말씀하세요"
                )
            ),
            "/said": twiml(lambda r: r.say("merci")),
        }
    )
    call = phone(app).call("+33612345678")
    call.speak("상태")
    assert app.last("/said")["SpeechResult"] == "상태"
    assert call.transcript() == "말씀하세요\nmerci" and call.status == "completed"


def test_keys_are_refused_where_only_a_queue_waits() -> None:
    app = App(
        {
            "/voice/incoming": twiml(lambda r: r.enqueue("line", wait_url="/music")),
            "/music": twiml(lambda r: r.say("Please hold")),
        }
    )
    call = phone(app).call("+33612345678")
    with pytest.raises(TwimlError):
        call.press("1")


def test_record_posts_a_recording_when_the_caller_speaks() -> None:
    app = App(
        {
            "/voice/incoming": twiml(lambda r: r.record(action="/recorded", max_length=60)),
            "/recorded": twiml(lambda r: r.hangup()),
        }
    )
    call = phone(app).call("+33612345678")
    call.speak("mon titre expire demain merci de me rappeler")
    form = app.last("/recorded")
    assert form["RecordingUrl"].startswith("https://api.twilio.com/2010-04-01/Accounts/AC")
    assert form["RecordingSid"].startswith("RE") and int(form["RecordingDuration"]) >= 1
    assert call.status == "completed"


def test_enqueue_plays_the_wait_url_until_the_caller_leaves() -> None:
    rounds = []

    def music(form: dict[str, str]) -> str:
        rounds.append(form["QueuePosition"])
        response = VoiceResponse()
        response.say("Please hold")
        if len(rounds) == 3:
            response.leave()
        return str(response)

    app = App(
        {
            "/voice/incoming": twiml(
                lambda r: r.enqueue("line", wait_url="/music", action="/left")
            ),
            "/music": music,
            "/left": twiml(lambda r: r.say("bye")),
        }
    )
    call = phone(app).call("+33612345678")
    call.wait().wait()
    assert rounds == ["1", "1", "1"]
    assert app.last("/left")["QueueResult"] == "leave"
    assert call.transcript().endswith("bye")


def test_dial_number_rings_a_leg_that_can_answer_or_not(redis_client: redis.Redis) -> None:
    app = App(
        {
            "/voice/incoming": twiml(lambda r: r.dial("+33699999999", action="/dialed")),
            "/dialed": twiml(lambda r: r.say("no answer, sorry")),
        }
    )
    dev = phone(app, redis_client)
    answered = dev.call("+33612345678")
    leg = dev.answer("+33699999999")
    answered.poll()
    assert answered.bridged and leg.bridged and answered.status == "in-progress"
    unanswered = dev.call("+33611111111")
    dev.refuse("+33699999999", "busy")
    unanswered.poll()
    assert app.last("/dialed")["DialCallStatus"] == "busy"
    assert unanswered.last_said() == "no answer, sorry"


def test_dial_client_rings_the_browser_identity(redis_client: redis.Redis) -> None:
    app = App({"/voice/incoming": twiml(lambda r: r.dial().client("agent-lea"))})
    dev = phone(app, redis_client)
    dev.call("+33612345678")
    assert [c["To"] for c in dev.ringing("client:agent-lea")] == ["client:agent-lea"]


def test_connect_stream_waits_until_the_stream_closes() -> None:
    def connect(r: VoiceResponse) -> None:
        r.connect(action="/heard").stream(url="wss://interphone.example.org/stream")

    app = App({"/voice/incoming": twiml(connect), "/heard": twiml(lambda r: r.say("ok"))})
    call = phone(app).call("sip:porte@prefecture.example.org")
    assert call.gather is not None and call.gather.target.startswith("wss://")
    call.end_stream()
    assert call.last_said() == "ok"


def test_a_document_that_is_not_twiml_is_reported() -> None:
    app = App({"/voice/incoming": lambda _: "<html>oops</html>"})
    with pytest.raises(TwimlError, match="Response"):
        phone(app).call("+33612345678")


def test_a_call_ending_while_redis_is_unreachable_still_ends_and_posts_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault campaign ends calls while Redis fails over: the dev phone's note that a
    call is over (Twilio then refuses to update it) is retried for a while, then left;
    the call's end and its status callback never fail for it."""
    from interphone.devtools.devphone import phone as phone_module

    monkeypatch.setattr(phone_module, "ENDED_RETRY_S", 0.3)
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.1)
    say = VoiceResponse()
    say.say("Bonjour")
    app = App({"/voice/incoming": lambda form: str(say)})
    call = phone(app, unreachable).call("+33612345678")
    assert call.status == "completed"
    assert app.last("/voice/status")["CallStatus"] == "completed"
    unreachable.close()
