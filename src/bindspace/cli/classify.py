"""`bindspace classify`: zero-shot labels for files of any modality, from text labels."""
from __future__ import annotations

import argparse
import json
import sys

from ..kinds import MEDIA_KINDS
from .common import UsageError, add_model_args, add_workers_arg, positive_int, workers

MODALITIES = MEDIA_KINDS


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `classify` sub-command to the parser."""
    parser = sub.add_parser(
        "classify",
        help="label files by text labels they were never trained on (zero-shot)",
        description="Rank text labels for each file by the similarity of their prompt embeddings "
        "(several templates per label, averaged) with the file's embedding; probabilities are "
        "softmax(text logit scale x cosine). Files that cannot be read are reported on stderr, one "
        "line each, the others are still classified; the exit status is then 1. Usage errors (no labels, "
        "a template without exactly one {}, a --device this machine lacks) exit with status 2.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="files to classify")
    parser.add_argument("--modality", "-m", required=True, choices=MODALITIES + ("vision",),
                        help="what the files are")
    parser.add_argument("--labels", action="append", default=[], metavar="A,B,C",
                        help="comma-separated labels (repeatable)")
    parser.add_argument("--labels-file", action="append", default=[], metavar="FILE",
                        help="a file with one label per line (blank lines and # comments ignored; repeatable)")
    parser.add_argument("--template", action="append", dest="templates", metavar="TEXT",
                        help="prompt template with {} for the label, e.g. 'the sound of {}.' (repeatable; "
                        "replaces the modality's default templates)")
    parser.add_argument("-k", "--top-k", type=positive_int, default=5, dest="k",
                        help="labels to show per file (default: 5)")
    parser.add_argument("--json", action="store_true", help="print JSON: per file, the top labels with probabilities")
    parser.add_argument("--with-audio", action="store_true",
                        help="video only: embed the video's audio track too and combine it with the frames "
                        "(videos without audio use their frames alone)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="items per forward pass (default: 32)")
    add_workers_arg(parser)
    add_model_args(parser)
    return parser


def read_labels(inline: list[str], files: list[str]) -> list[str]:
    """Labels from --labels and --labels-file, in order, without duplicates (UsageError when there are none)."""
    labels = [part.strip() for text in inline for part in text.split(",")]
    for path in files:
        try:
            with open(path, encoding="utf-8-sig") as handle:
                labels += [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
        except FileNotFoundError:
            raise UsageError(f"labels file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"labels file {path}: cannot read it ({exc})") from None
    labels = list(dict.fromkeys(label for label in labels if label))
    if not labels:
        raise UsageError("no labels: give --labels a,b,c or --labels-file FILE")
    return labels


def user_templates(templates: list[str] | None) -> tuple[str, ...] | None:
    """--template values checked (a bad one is a usage error), or None for the defaults."""
    from ..errors import BindspaceError
    from ..tasks.templates import check_templates

    if not templates:
        return None
    try:
        return check_templates(templates)
    except BindspaceError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run `bindspace classify`; returns the exit status."""
    from ..modality import as_modality
    from ..tasks import ZeroShotClassifier
    from .common import load_model

    modality = "image" if args.modality == "vision" else args.modality
    labels = read_labels(args.labels, args.labels_file)
    if args.with_audio and modality != "video":
        raise UsageError("--with-audio applies to --modality video only")
    templates = user_templates(args.templates)
    towers = ["text", str(as_modality(modality))] + (["audio"] if args.with_audio else [])
    model = load_model(args, towers)
    from ..embedding import Embedder

    embedder = Embedder(model, batch_size=args.batch_size, num_workers=workers(args))
    classifier = ZeroShotClassifier(embedder, labels, templates, modality=modality)
    if args.with_audio:
        result = _classify_video_with_audio(classifier, embedder, args.files, args.k)
    else:
        result = classifier.classify(modality, args.files, args.k)
    if args.json:
        payload = [{"file": p.name, "predictions": p.to_dict()["predictions"]} for p in result.predictions]
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        print(format_table(result.predictions))
    for error in result.errors:
        print(f"bindspace classify: {error.name}: {error.message}", file=sys.stderr)
    return 1 if result.errors else 0


def _classify_video_with_audio(classifier, embedder, files: list[str], k: int):
    from ..tasks import Classification, embed_video

    videos = embed_video(embedder, files, on_error="skip")
    if not videos.indices:
        return Classification([], list(videos.errors))
    predictions = classifier.predict_vectors(videos.vectors, k, modality="video", names=videos.names,
                                             indices=videos.indices)
    return Classification(predictions, list(videos.errors))


def format_table(predictions: list) -> str:
    """One block per file: rank, label, probability."""
    blocks = []
    for prediction in predictions:
        width = max(len(label) for label in prediction.labels)
        rows = [prediction.name]
        for rank, (label, prob) in enumerate(zip(prediction.labels, prediction.probabilities), start=1):
            rows.append(f"  {rank:>2}. {label:<{width}}  {prob:6.4f}")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)
