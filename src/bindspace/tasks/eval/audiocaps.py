"""AudioCaps: zero-shot text->audio retrieval on the test split.

Layout (the published CSVs, github.com/cdjkim/audiocaps, plus your own download of the clips):

    ROOT/test.csv            columns audiocap_id,youtube_id,start_time,caption
                             (ROOT/dataset/test.csv is accepted too)
    ROOT/test/<clip file>    the 10-second clips; audio/test/ or audio/ are accepted too

AudioCaps ships no audio; a clip file may be named (any of .wav .flac .mp3 .ogg .m4a):
`<youtube_id>_<start_time>` (e.g. `--0PQM4-hqg_30.wav`, start as in the CSV or as an
integer), `<youtube_id>`, or `Y<youtube_id>` (AudioSet style). Captions of the same
(youtube_id, start_time) share one clip; every caption is a query whose clip is the one
relevant item. Clips that were not found (YouTube videos disappear) are skipped with their
captions and counted, so a partial download still gives a number - a different one than
on the full test set, as the report's counts show.
"""
from __future__ import annotations

from pathlib import Path

from .base import (
    EvalOptions,
    LayoutError,
    RetrievalSet,
    Sample,
    Skipped,
    evenly_spaced,
    file_sample,
    first_existing,
    read_csv,
    require_dir,
)

NAME = "audiocaps"
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
CSV_CANDIDATES = ("test.csv", "dataset/test.csv")
AUDIO_DIRS = ("test", "audio/test", "audio")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")


def candidate_stems(youtube_id: str, start_time: str) -> list[str]:
    """File names (without extension) a clip may have, most specific first."""
    stems = [f"{youtube_id}_{start_time}"]
    try:
        seconds = float(start_time)
        stems += [f"{youtube_id}_{int(seconds)}", f"{youtube_id}_{seconds:.3f}"]
    except ValueError:
        pass
    return list(dict.fromkeys(stems + [youtube_id, f"Y{youtube_id}"]))


def _index(folder: Path) -> dict[str, Path]:
    """Audio files of a folder by stem (one listing instead of a stat per candidate name)."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
            out.setdefault(path.stem, path)
    return out


def load(root: Path, options: EvalOptions) -> RetrievalSet:
    """Read test.csv, group captions by clip, and find each clip's file."""
    require_dir(root, "dataset root", NAME)
    csv_path = first_existing(root, CSV_CANDIDATES, want_dir=False)
    if csv_path is None:
        raise LayoutError(f"{NAME}: missing test.csv under {root} (from github.com/cdjkim/audiocaps/dataset)")
    rows = read_csv(csv_path, COLUMNS, NAME)
    audio = first_existing(root, AUDIO_DIRS, want_dir=True)
    if audio is None:
        raise LayoutError(f"{NAME}: missing the clip folder test/ under {root} (files named <youtube_id>_<start>.wav)")
    clips: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row["youtube_id"] and row["caption"]:
            clips.setdefault((row["youtube_id"], row["start_time"]), []).append(row["caption"])
    if not clips:
        raise LayoutError(f"{NAME}: {csv_path.name} lists no captioned clips")
    files = _index(audio)
    keys = list(clips)
    gallery: list[Sample] = []
    skipped: list[Skipped] = []
    queries: list[str] = []
    targets: list[int] = []
    missing = 0
    for i in evenly_spaced(len(keys), options.limit):
        youtube_id, start = keys[i]
        label = f"{youtube_id}_{start}"
        path = next((files[s] for s in candidate_stems(youtube_id, start) if s in files), None)
        if path is None:
            missing += 1
            expected = f"{youtube_id}_{start}.wav or {youtube_id}.wav"
            skipped.append(Skipped(label, f"no clip file in {audio.name}/ ({expected})"))
            continue
        sample = file_sample(path, path.name)
        if isinstance(sample, Skipped):
            skipped.append(sample)
            continue
        gallery.append(sample)
        queries.extend(clips[keys[i]])
        targets.extend([len(gallery) - 1] * len(clips[keys[i]]))
    return RetrievalSet(
        gallery=gallery, queries=queries, query_targets=targets, skipped=skipped, total=len(keys),
        notes={"direction": "text->audio", "clips_not_found": missing},
    )
