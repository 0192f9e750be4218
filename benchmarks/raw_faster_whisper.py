"""faster-whisper called directly, as a user's own script would: the peer of
`pipeline transcribe --backend faster-whisper` (given the options the pipeline's backend passes) and of the
default `pipeline transcribe` (given none: --batch-size and --beam-size left out are faster-whisper's own
defaults). Prints one JSON line with its phases and writes the segments (with words, if asked) to --output.

    python benchmarks/raw_faster_whisper.py AUDIO --model DIR --output OUT.json [options]
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--beam-size", type=int, help="default: faster-whisper's")
    parser.add_argument("--batch-size", type=int, help="default: BatchedInferencePipeline's")
    parser.add_argument("--vad", type=int, default=1)
    parser.add_argument("--word-timestamps", type=int, default=1)
    parser.add_argument("--language")
    parser.add_argument("--task", default="transcribe")
    args = parser.parse_args()

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    imported = time.perf_counter()
    model = WhisperModel(
        args.model,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.threads,
        local_files_only=True,
    )
    batched = BatchedInferencePipeline(model) if (args.batch_size or 2) > 1 and args.vad else None
    loaded = time.perf_counter()
    options = dict(
        language=args.language,
        task=args.task,
        word_timestamps=bool(args.word_timestamps),
        initial_prompt=None,
        vad_filter=bool(args.vad),
    )
    if args.beam_size is not None:
        options["beam_size"] = args.beam_size
    if batched is not None:
        batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
        segments, info = batched.transcribe(args.audio, **batch, **options)
    else:
        segments, info = model.transcribe(args.audio, **options)
    result = [
        {
            "start": s.start,
            "end": s.end,
            "text": s.text.strip(),
            "words": [
                {"start": w.start, "end": w.end, "text": w.word, "probability": w.probability} for w in s.words or ()
            ],
        }
        for s in segments
    ]
    transcribed = time.perf_counter()
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(
            {"language": info.language, "duration": info.duration, "segments": result},
            handle,
            ensure_ascii=False,
        )
    written = time.perf_counter()
    print(
        json.dumps(
            {
                "import_s": round(imported - started, 3),
                "load_s": round(loaded - imported, 3),
                "transcribe_s": round(transcribed - loaded, 3),
                "write_s": round(written - transcribed, 3),
                "language": info.language,
                "segments": len(result),
                "text": " ".join(s["text"] for s in result),
            }
        )
    )


if __name__ == "__main__":
    main()
