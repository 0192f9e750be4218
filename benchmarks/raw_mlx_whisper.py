"""mlx-whisper called directly, as a user's own script would: the peer of `pipeline transcribe --backend mlx`.
Prints one JSON line with its phases and writes the result to --output.

    python benchmarks/raw_mlx_whisper.py AUDIO --model MLX_DIR --output OUT.json [--fp16 0|1] [--language en]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("audio")
    parser.add_argument("--model", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--fp16", type=int, default=0)
    parser.add_argument("--word-timestamps", type=int, default=1)
    parser.add_argument("--language")
    args = parser.parse_args()

    import mlx_whisper

    imported = time.perf_counter()
    result = mlx_whisper.transcribe(
        args.audio,
        path_or_hf_repo=args.model,
        verbose=None,
        language=args.language,
        word_timestamps=bool(args.word_timestamps),
        fp16=bool(args.fp16),
    )
    transcribed = time.perf_counter()
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False)
    print(
        json.dumps(
            {
                "import_s": round(imported - started, 3),
                "transcribe_s": round(transcribed - imported, 3),
                "language": result["language"],
                "segments": len(result["segments"]),
                "text": result["text"].strip(),
            }
        )
    )


if __name__ == "__main__":
    main()
