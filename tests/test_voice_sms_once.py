"""An SMS confirmation is sent once, even when the worker sending it dies.

The sending job is retried (RQ), and a worker can be killed between Twilio's answer and
the end of its job: the retry must not send the same confirmation a second time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import redis
from sqlalchemy import select

from interphone import failpoints
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.devphone.rest import sent_messages
from interphone.models import Contact
from interphone.runtime import Runtime
from interphone.voice.messaging import SENDING, SENT_PREFIX

from .topology import wait_until

CALLER = "+33612345678"

_SEND = """
import sys
from interphone.config import load_settings
from interphone.devtools.devphone.plugin import dev_runtime
rt = dev_runtime(load_settings(), inline_jobs=True)
rt.sms.send_to_contact(int(sys.argv[1]), "sms_callback")
"""


def _callback(devphone: DevPhone, rt: Runtime) -> Contact:
    devphone.call(CALLER).press("2").press("2").press("1").press("#").press("3")
    with rt.sessions() as s:
        [contact] = s.scalars(select(Contact)).all()
    return contact


def _killed_after_twilio_answered(rt: Runtime, contact_id: int) -> None:
    """A worker process sends the SMS and is SIGKILLed right after Twilio's answer."""
    settings = rt.settings
    env = {
        **os.environ,
        "INTERPHONE_ENV": "test",
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": rt.database_url,
        "SECRET_KEY": settings.secret_key,
        "INTERPHONE_INSTANCE": str(settings.instance_path),
        "INTERPHONE_FAILPOINTS": "sms.sent",
    }
    proc = subprocess.Popen([sys.executable, "-c", _SEND, str(contact_id)], env=env)
    try:
        reached = lambda: rt.redis.exists(failpoints.MARK + "sms.sent")  # noqa: E731
        wait_until(lambda: reached() or proc.poll() is not None, 60, "the fail point sms.sent")
        assert reached(), "the sending process ended before its fail point"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    rt.redis.delete(failpoints.MARK + "sms.sent")


def test_sms_job_retried_after_its_worker_died_between_send_and_mark_is_not_sent_twice(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    contact = _callback(devphone, rt)
    rt.redis.delete(SENT_PREFIX + f"{contact.id}:sms_callback")  # as if never sent
    rt.redis.delete("ip:devphone:messages")
    _killed_after_twilio_answered(rt, contact.id)
    [sent] = sent_messages(rt.redis)  # Twilio has it; the mark still says "sending"
    assert rt.redis.get(SENT_PREFIX + f"{contact.id}:sms_callback") == SENDING.encode()
    again = rt.sms.send_to_contact(contact.id, "sms_callback")  # the job's retry
    assert again == sent["sid"]
    assert [m["sid"] for m in sent_messages(rt.redis)] == [sent["sid"]]
    assert rt.sms.send_to_contact(contact.id, "sms_callback") == sent["sid"]  # and after
    assert len(sent_messages(rt.redis)) == 1


def test_sms_attempt_that_died_before_twilio_got_it_is_sent_by_the_retry(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """The mark says "being sent" but Twilio has no message naming this contact's
    reference (the attempt died before its request left; another request's SMS to the
    same number does not count): the retry sends it, once."""
    rt = voice_runtime
    contact = _callback(devphone, rt)
    rt.redis.delete("ip:devphone:messages")  # Twilio never got this contact's SMS
    decoy = "Préfecture: callback recorded, reference ZZZZZZ, position 1."
    rt.twilio_client().messages.create(to=CALLER, from_="+33473000000", body=decoy)
    rt.redis.set(SENT_PREFIX + f"{contact.id}:sms_callback", SENDING)
    sid = rt.sms.send_to_contact(contact.id, "sms_callback")
    texts = sent_messages(rt.redis)
    assert len(texts) == 2 and texts[-1]["sid"] == sid
    assert contact.reference in texts[-1]["Body"] and texts[-1]["To"] == CALLER
    assert rt.sms.send_to_contact(contact.id, "sms_callback") == sid
    assert len(sent_messages(rt.redis)) == 2


def test_twilio_message_list_reaches_the_dev_phone_over_the_network(
    redis_client: redis.Redis,
) -> None:
    """The fault tests' REST side is an HTTP server: the retry's look at Twilio's list
    of messages (a GET with a query) failed there, so the abandoned SMS was never sent."""
    from twilio.rest import Client

    from interphone.devtools.devphone.rest_http import RemoteDevPhoneHttpClient, RestServer

    server = RestServer(redis_client).start()
    try:
        client = Client("AC" + "0" * 32, "token", http_client=RemoteDevPhoneHttpClient(server.url))
        for to, body in ((CALLER, "reference AAAAAA"), ("+33698765432", "reference BBBBBB")):
            client.messages.create(to=to, from_="+33473000000", body=body)
        listed = client.messages.list(to=CALLER, from_="+33473000000", limit=20)
    finally:
        server.stop()
    assert [m.body for m in listed] == ["reference AAAAAA"]
