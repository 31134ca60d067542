"""Email delivery: what one email costs, through relay's email channel to a real SMTP server on loopback.

The suite's SMTP server (tests/fakes/smtp.py: aiosmtpd with STARTTLS and AUTH
required, its own CA) runs in this process beside the channel, as relay's
receivers are configured in production (`require_tls`, `tls_ca_file`,
`auth_username`). Each send is a whole SMTP conversation (connect, EHLO,
STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT), one at a time.

Reported: emails/s and CPU per email (channel and server together: both are
Python on these two cores), median over runs.

    python -m bench.email                 # 300 emails, 3 runs
    python -m bench.email --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import time
import warnings
from collections.abc import Sequence

from bench.common import Machine, median, table
from relay.channels.email import EmailChannel
from relay.config.receivers import ReceiverConfig
from relay.templating import Templates
from tests.fakes import notification
from tests.fakes.smtp import SmtpServer
from tests.helpers import TEMPLATES

USER, PASSWORD = "relay@bench.example", "bench-password"


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(emails: int) -> tuple[float, float]:
    async with SmtpServer(require_starttls=True, auth={USER: PASSWORD}) as smtp:
        receiver = ReceiverConfig.model_validate({
            "name": "bench-email", "email": {
                "to": ["oncall@bench.example"], "from": USER, "smarthost": smtp.smarthost, "require_tls": True,
                "tls_ca_file": smtp.ca_file, "auth_username": USER, "auth_password": PASSWORD}})
        channel = EmailChannel(receiver, Templates(TEMPLATES))
        message = notification("firing-poddown")
        for _ in range(10):  # warm: templates, the first connection
            await channel.send(message)
        cpu, started = cpu_now(), time.perf_counter()
        for _ in range(emails):
            await channel.send(message)
        elapsed, cpu = time.perf_counter() - started, cpu_now() - cpu
        await smtp.wait_for(emails + 10)
    return emails / elapsed, cpu / emails * 1000


async def main(opts: argparse.Namespace) -> int:
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-session chatter
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")  # aiosmtpd's own, per login
    machine = Machine()
    results = []
    for run in range(1, opts.runs + 1):
        rate, cpu = await one_run(opts.emails)
        results.append((rate, cpu))
        print(f"  run {run}: {rate:.0f} emails/s, CPU {cpu:.2f} ms/email", flush=True)
    machine.done()
    rates = [r for r, _ in results]
    print(f"\nEmail: {opts.emails} emails one at a time over STARTTLS + AUTH to an SMTP server on loopback "
          f"(in this process); {opts.runs} run(s), medians.")
    print(machine.describe() + "\n")
    print(table(["channel", "runs", "emails/s", "range", "CPU ms/email (channel + server)"],
                [["email", len(results), f"{median(rates):.0f}", f"{min(rates):.0f}-{max(rates):.0f}",
                  f"{median([c for _, c in results]):.2f}"]]))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--require-postgres", action="store_true", help="accepted for `python -m bench`; unused")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks the bench works")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.emails, opts.runs = 20, 1
    return opts


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
