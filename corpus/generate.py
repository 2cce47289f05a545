#!/usr/bin/env python3
"""Generate a deterministic, realistic mail corpus for mailroute baseline benchmarks.

Usage:
    python3 corpus/generate.py OUTDIR [--seed N] [--no-large]

Writes about 200 RFC 5322 messages (CRLF line endings, as they travel over SMTP)
into OUTDIR plus OUTDIR/manifest.json describing each file (category, size,
charset, transfer encoding, expectations for a disclaimer filter).

Only the Python standard library is used, so the corpus can be rebuilt on any
machine.  The corpus itself is never committed: run this script instead.

Categories (counts):
    plain          40  text/plain in us-ascii/7bit, utf-8/QP, utf-8/base64,
                       utf-8/8bit, iso-8859-1/QP, windows-1252/QP
    html           25  text/html only (with and without </body>, utf-8 and latin-1)
    alternative    45  multipart/alternative text+html
    attachments    40  multipart/mixed(alternative + 1..3 attachments, 100 KB - 1 MB)
    related         8  multipart/related html + inline image (cid:)
    reply          12  replies with quoted text; half already carry the disclaimer
    apple           6  Apple Mail layout: alternative(text, mixed(html, pdf, html))
    calendar        6  Outlook-style invite: alternative(text, html, text/calendar)
    signed-shape    6  multipart/signed / application/pkcs7-mime *shapes* with a
                       placeholder signature (structure only, not verifiable)
    text-attach     6  text/plain body + text/plain and text/csv attachments
    large           3  one 20 MB attachment each (skipped with --no-large)
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from pathlib import Path

SMTP_POLICY = policy.SMTP.clone(max_line_length=78)
DISCLAIMER_MARKER = "mailroute-disclaimer-v1"  # text a gateway footer would contain

GERMAN = "Grüße aus Köln - Größe, Straße, Äpfel, Öl, Übermaß, 25 °C, 10 EUR. "
FRENCH = "Très chère équipe, voilà le rapport détaillé – à bientôt. "
CYRILLIC = "Повідомлення про зустріч: будь ласка, підтвердіть участь. "
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, "
    "quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo. "
)


class Gen:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.base_time = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
        self.n = 0

    # ------------------------------------------------------------------ helpers
    def words(self, n_paragraphs: int, flavour: str = "en") -> str:
        extra = {"de": GERMAN, "fr": FRENCH, "uk": CYRILLIC, "en": ""}[flavour]
        paras = []
        for _ in range(n_paragraphs):
            reps = self.rnd.randint(1, 4)
            paras.append((LOREM + extra) * reps)
        return "\n\n".join(p.strip() for p in paras) + "\n"

    def headers(self, msg: MIMEPart, subject: str) -> None:
        self.n += 1
        users = ["anna.schmidt", "j.doe", "m.dupont", "o.kovalenko", "sales", "it-ops"]
        sender = self.rnd.choice(users)
        rcpt = self.rnd.choice(users)
        msg["From"] = f"{sender.replace('.', ' ').title()} <{sender}@corp.example>"
        msg["To"] = f"{rcpt}@partner.example"
        msg["Subject"] = subject
        when = self.base_time + timedelta(minutes=7 * self.n)
        msg["Date"] = format_datetime(when)
        msg["Message-ID"] = self.msgid()
        msg["MIME-Version"] = "1.0"

    def html_of(self, text: str, closing_body: bool = True, charset: str = "utf-8") -> str:
        paras = "".join(f"<p>{p}</p>\n" for p in text.strip().split("\n\n"))
        head = (
            f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={charset}">'
            "<style>p{font-family:Calibri,Arial;font-size:11pt}</style></head>\n"
        )
        body = f'<body lang="DE"><div class="WordSection1">\n{paras}</div>\n'
        return head + body + ("</body></html>\n" if closing_body else "")

    def msgid(self, domain: str = "corp.example") -> str:
        """Deterministic Message-ID (the stdlib helper mixes in time and pid)."""
        return f"<{self.rnd.getrandbits(64):016x}.{self.n}@{domain}>"

    def blob(self, size: int) -> bytes:
        return self.rnd.randbytes(size)

    def set_text(self, part: MIMEPart, text: str, subtype: str, charset: str, cte: str) -> None:
        """Set a text body with an explicit charset and transfer encoding."""
        if cte == "8bit" or cte == "7bit":
            part.set_content(text, subtype=subtype, charset=charset, cte=cte)
        else:
            part.set_content(text, subtype=subtype, charset=charset, cte=cte)

    # --------------------------------------------------------------- categories
    def plain(self, i: int) -> tuple[EmailMessage, dict]:
        variants = [
            ("us-ascii", "7bit", "en"),
            ("utf-8", "quoted-printable", "de"),
            ("utf-8", "base64", "uk"),
            ("utf-8", "8bit", "fr"),
            ("iso-8859-1", "quoted-printable", "de"),
            ("windows-1252", "quoted-printable", "fr"),
        ]
        charset, cte, flav = variants[i % len(variants)]
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Plain {i} {charset}/{cte}")
        self.set_text(msg, self.words(self.rnd.randint(1, 6), flav), "plain", charset, cte)
        return msg, {"charset": charset, "cte": cte}

    def html_only(self, i: int) -> tuple[EmailMessage, dict]:
        charset = "utf-8" if i % 3 else "iso-8859-1"
        closing = i % 5 != 0
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"HTML only {i}")
        html = self.html_of(self.words(self.rnd.randint(2, 8), "de"), closing, charset)
        self.set_text(msg, html, "html", charset, "quoted-printable")
        return msg, {"charset": charset, "cte": "quoted-printable", "has_closing_body": closing}

    def alternative(self, i: int, flav: str = "de") -> tuple[EmailMessage, dict]:
        charset = ["utf-8", "utf-8", "iso-8859-1", "windows-1252"][i % 4]
        cte = ["quoted-printable", "base64", "quoted-printable", "8bit"][i % 4]
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Alternative {i}")
        text = self.words(self.rnd.randint(2, 8), flav)
        self.set_text(msg, text, "plain", charset, cte)
        msg.add_alternative(self.html_of(text, True, charset), subtype="html",
                            charset=charset, cte=cte)
        return msg, {"charset": charset, "cte": cte}

    def attachments(self, i: int) -> tuple[EmailMessage, dict]:
        msg, meta = self.alternative(i)
        del msg["Subject"]
        msg["Subject"] = f"Report with attachments {i}"
        sizes = []
        for k in range(self.rnd.randint(1, 3)):
            size = self.rnd.randint(100 * 1024, 1024 * 1024)
            kind = self.rnd.choice([("application", "pdf", "pdf"),
                                    ("application", "vnd.openxmlformats-officedocument."
                                     "spreadsheetml.sheet", "xlsx"),
                                    ("image", "jpeg", "jpg"),
                                    ("application", "zip", "zip")])
            msg.add_attachment(self.blob(size), maintype=kind[0], subtype=kind[1],
                               filename=f"Anhang-{i}-{k}-Übersicht.{kind[2]}")
            sizes.append(size)
        meta["attachment_sizes"] = sizes
        return msg, meta

    def related(self, i: int) -> tuple[EmailMessage, dict]:
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Newsletter with inline logo {i}")
        text = self.words(3, "en")
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        cid = self.msgid()
        html = self.html_of(text).replace(
            "<body lang=\"DE\">", f'<body lang="DE"><img src="cid:{cid[1:-1]}" alt="logo">')
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        html_part = msg.get_payload()[1]
        html_part.add_related(self.blob(self.rnd.randint(5_000, 60_000)), maintype="image",
                              subtype="png", cid=cid, filename="logo.png")
        return msg, {"charset": "utf-8", "cte": "quoted-printable"}

    def reply(self, i: int) -> tuple[EmailMessage, dict]:
        already = i % 2 == 0
        quoted_src = self.words(3, "de")
        if already:
            quoted_src += f"\n-- \nVertraulich / Confidential. {DISCLAIMER_MARKER}\n"
        quoted = "".join("> " + line + "\n" for line in quoted_src.splitlines())
        text = self.words(1, "de") + "\nOn Mon, 3 Mar 2025 Anna Schmidt wrote:\n" + quoted
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Re: Angebot {i}")
        msg["In-Reply-To"] = self.msgid("partner.example")
        msg["References"] = msg["In-Reply-To"]
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        quote_html = "".join(f"<p>{p}</p>" for p in quoted_src.split("\n\n"))
        html = (
            "<html><head></head><body>"
            f"<div>{self.words(1, 'de')}</div>"
            '<div id="appendonsend"></div><hr>'
            '<div id="divRplyFwdMsg"><b>From:</b> Anna Schmidt<br><b>Sent:</b> Monday</div>'
            f'<blockquote type="cite">{quote_html}</blockquote>'
            "</body></html>\n"
        )
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        return msg, {"already_has_disclaimer": already, "charset": "utf-8",
                     "cte": "quoted-printable"}

    def apple(self, i: int) -> tuple[EmailMessage, dict]:
        """Apple Mail: attachments live inside the html branch of the alternative."""
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Apple Mail layout {i}")
        msg["X-Mailer"] = "Apple Mail (2.3774.500.171.1.1)"
        text = self.words(2, "fr")
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        mixed = MIMEPart(policy=SMTP_POLICY)
        mixed.make_mixed()
        first = MIMEPart(policy=SMTP_POLICY)
        first.set_content("<html><body><div>" + text.split("\n\n")[0] + "</div></body></html>\n",
                          subtype="html", charset="utf-8", cte="quoted-printable")
        pdf = MIMEPart(policy=SMTP_POLICY)
        pdf.set_content(self.blob(self.rnd.randint(100_000, 400_000)), maintype="application",
                        subtype="pdf", disposition="inline", filename="Rechnung.pdf")
        last = MIMEPart(policy=SMTP_POLICY)
        last.set_content("<html><body><div>Cordialement,<br>Marie</div></body></html>\n",
                         subtype="html", charset="utf-8", cte="quoted-printable")
        for p in (first, pdf, last):
            mixed.attach(p)
        msg.make_alternative()
        msg.attach(mixed)
        return msg, {"layout": "alternative(text, mixed(html, pdf, html))"}

    def calendar(self, i: int) -> tuple[EmailMessage, dict]:
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Einladung: Projektmeeting {i}")
        text = "Projektmeeting\nWann: Dienstag 10:00-11:00\nWo: Raum Köln\n"
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        msg.add_alternative(self.html_of(text), subtype="html", charset="utf-8",
                            cte="quoted-printable")
        uid = f"{self.rnd.getrandbits(64):016x}@corp.example"
        ics = (
            "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:Microsoft Exchange Server 2010\r\n"
            "VERSION:2.0\r\nBEGIN:VEVENT\r\nORGANIZER;CN=Anna Schmidt:mailto:anna.schmidt@"
            "corp.example\r\nATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:j.doe@partner."
            f"example\r\nDESCRIPTION;LANGUAGE=de-DE:{text.strip()}\r\nUID:{uid}\r\n"
            "SUMMARY;LANGUAGE=de-DE:Projektmeeting\r\nDTSTART:20250304T090000Z\r\n"
            "DTEND:20250304T100000Z\r\nSEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        msg.add_alternative(ics, subtype="calendar", charset="utf-8", cte="base64",
                            params={"method": "REQUEST"})
        return msg, {"method": "REQUEST"}

    def signed_shape(self, i: int) -> tuple[EmailMessage, dict]:
        """Structure of S/MIME signed mail with a placeholder signature (not verifiable)."""
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Signed shape {i}")
        placeholder = base64.b64encode(self.blob(1800)).decode()
        if i % 3 == 2:
            msg.set_content(self.blob(20_000), maintype="application", subtype="pkcs7-mime",
                            params={"smime-type": "signed-data", "name": "smime.p7m"},
                            filename="smime.p7m")
            return msg, {"shape": "application/pkcs7-mime signed-data (opaque)"}
        inner = MIMEPart(policy=SMTP_POLICY)
        inner.set_content(self.words(2, "de"), charset="utf-8", cte="quoted-printable")
        sig = MIMEPart(policy=SMTP_POLICY)
        sig.set_content(base64.b64decode(placeholder), maintype="application",
                        subtype="pkcs7-signature", filename="smime.p7s")
        msg.make_mixed()
        msg.attach(inner)
        msg.attach(sig)
        boundary = f"----=_signed_{self.rnd.getrandbits(64):016x}"
        msg.replace_header("Content-Type", 'multipart/signed; protocol="application/pkcs7-'
                           f'signature"; micalg=sha-256; boundary="{boundary}"')
        return msg, {"shape": "multipart/signed (detached)"}

    def text_attach(self, i: int) -> tuple[EmailMessage, dict]:
        msg = EmailMessage(policy=SMTP_POLICY)
        self.headers(msg, f"Logs attached {i}")
        msg.set_content(self.words(1, "en"), charset="utf-8", cte="7bit")
        msg.add_attachment(self.words(20, "en"), subtype="plain", charset="utf-8",
                           filename="server.log", disposition="attachment")
        rows = "\n".join(f"{k};{self.rnd.randint(1, 9999)};Köln" for k in range(2000))
        msg.add_attachment(rows, subtype="csv", charset="utf-8", filename="export.csv")
        return msg, {"note": "text/plain attachment must not get a disclaimer"}

    def large(self, i: int) -> tuple[EmailMessage, dict]:
        msg, meta = self.alternative(i)
        del msg["Subject"]
        msg["Subject"] = f"Large transfer {i}"
        msg.add_attachment(self.blob(20 * 1024 * 1024), maintype="application",
                           subtype="octet-stream", filename=f"backup-{i}.bin")
        meta["attachment_sizes"] = [20 * 1024 * 1024]
        return msg, meta


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--seed", type=int, default=20250303)
    ap.add_argument("--no-large", action="store_true", help="skip the 20 MB messages")
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)

    random.seed(args.seed)  # email.generator draws MIME boundaries from the global RNG
    g = Gen(args.seed)
    plan = [
        ("plain", 40, g.plain),
        ("html", 25, g.html_only),
        ("alternative", 45, g.alternative),
        ("attachments", 40, g.attachments),
        ("related", 8, g.related),
        ("reply", 12, g.reply),
        ("apple", 6, g.apple),
        ("calendar", 6, g.calendar),
        ("signed-shape", 6, g.signed_shape),
        ("text-attach", 6, g.text_attach),
    ]
    if not args.no_large:
        plan.append(("large", 3, g.large))

    manifest = []
    for category, count, fn in plan:
        for i in range(count):
            msg, meta = fn(i)
            data = msg.as_bytes(policy=SMTP_POLICY)
            name = f"{category}-{i:03d}.eml"
            (args.outdir / name).write_bytes(data)
            manifest.append({"file": name, "category": category, "bytes": len(data), **meta})
    (args.outdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    total = sum(m["bytes"] for m in manifest)
    print(f"wrote {len(manifest)} messages, {total / 1e6:.1f} MB, to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
