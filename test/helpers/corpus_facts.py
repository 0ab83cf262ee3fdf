"""Facts about a directory of .eml files, computed with Python's standard
email package: a reader nobody on this project wrote, so the search tests
compare our index against an independent parse of the same bytes.

Usage: python3 corpus_facts.py DIR WORD...
Prints JSON: {messages, messageIds: {id: count}, fromCounts: {addr: count},
subjectWords: {word: count}}; counts are of distinct files (the caller writes
one file per distinct message).
"""
import email
import email.policy
import json
import os
import re
import sys
from email.header import decode_header, make_header
from email.utils import getaddresses

root, words = sys.argv[1], [w.lower() for w in sys.argv[2:]]
facts = {"messages": 0, "messageIds": {}, "fromCounts": {}, "subjectWords": {w: 0 for w in words}}
for name in sorted(os.listdir(root)):
    with open(os.path.join(root, name), "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.compat32)
    facts["messages"] += 1
    mid = msg.get("Message-ID")
    if mid:
        mid = re.sub(r"\s+", "", str(mid)).strip().lstrip("<").rstrip(">")
        if mid:
            facts["messageIds"][mid] = facts["messageIds"].get(mid, 0) + 1
    froms = {a.lower() for _, a in getaddresses([str(v) for v in msg.get_all("From", [])]) if a}
    for a in froms:
        facts["fromCounts"][a] = facts["fromCounts"].get(a, 0) + 1
    subj = msg.get("Subject")
    if subj is not None:
        try:
            text = str(make_header(decode_header(str(subj))))
        except Exception:
            text = str(subj)
        tokens = set(t.lower() for t in re.findall(r"[A-Za-z0-9]+", text))
        for w in words:
            if w in tokens:
                facts["subjectWords"][w] += 1
print(json.dumps(facts))
