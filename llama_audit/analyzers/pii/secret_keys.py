"""SECRET: private key blocks and access tokens whose issuers document a fixed prefix/shape.

Only formats with a documented, distinctive prefix are detected, so generic high-entropy strings
(hashes, UUIDs, base64 blobs) are not reported. (The module is not called ``secrets`` so that it can
never shadow the standard library module.)
"""

from __future__ import annotations

import re

from llama_audit.analyzers.pii.recognizers import Recognizer
from llama_audit.analyzers.pii.spans import Span

# name -> pattern. Every pattern starts with a literal the prefilter below also lists.
SECRET_PATTERNS: dict[str, str] = {
    # PEM / OpenSSH / PGP private keys: the whole block when its END line is there.
    "private_key": (
        r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----"
        # up to 16k characters (RSA-8192 PEM is ~6.4k), never across another BEGIN line
        r"(?:(?:(?!-----BEGIN)[\s\S]){0,16000}?-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----)?"
    ),
    "aws_access_key_id": r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
    "github_token": r"gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9])",
    "github_fine_grained_pat": r"github_pat_[A-Za-z0-9_]{22,255}",
    "gitlab_pat": r"glpat-[A-Za-z0-9_\-]{20,}",
    "slack_token": r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    "slack_webhook": r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
    "google_api_key": r"AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])",
    "stripe_live_key": r"(?:sk|rk)_live_[0-9A-Za-z]{20,}",
    "openai_key": r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}T3BlbkFJ[A-Za-z0-9_\-]{16,}",
    "anthropic_key": r"sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,}",
    "npm_token": r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])",
    "pypi_token": r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}",
    "huggingface_token": r"hf_[A-Za-z]{34}(?![A-Za-z0-9])",
    "sendgrid_key": r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
}

_SECRET = re.compile(
    r"(?<![A-Za-z0-9_])(?:" + "|".join(f"(?:{p})" for p in SECRET_PATTERNS.values()) + ")",
    re.ASCII,
)


class SecretRecognizer(Recognizer):
    entity = "SECRET"
    prefilter = (
        "regex",
        r"PRIVATE KEY|AKIA|ASIA|ABIA|ACCA|A3T|gh[pousr]_|github_pat_|glpat-|xox[abposr]-"
        r"|hooks\.slack\.com|AIza|[sr]k_live_|T3BlbkFJ|sk-ant-|npm_|pypi-|hf_|SG\.",
    )

    def find(self, text: str) -> list[Span]:
        return [(self.entity, m.start(), m.end()) for m in _SECRET.finditer(text)]
