# The Python workload recorded in python3.trace.gz (see README.md): builds and drops a word index,
# round-trips it through JSON, and sorts records: allocation phases of different sizes and lifetimes.
import json
import random
import re

random.seed(7)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(3, 12)))
         for _ in range(1500)]
text = " ".join(random.choice(words) for _ in range(12000))
index = {}
for pos, m in enumerate(re.finditer(r"[a-z]+", text)):
    index.setdefault(m.group(0), []).append(pos)
blob = json.dumps(index)
back = json.loads(blob)
assert len(back) == len(index)
records = [{"word": w, "count": len(p), "first": p[0]} for w, p in back.items()]
records.sort(key=lambda r: (-r["count"], r["word"]))
del index, back, blob
lines = [f"{r['word']}:{r['count']}" for r in records[:1000]]
print(len(records), lines[0])
