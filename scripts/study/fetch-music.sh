#!/usr/bin/env bash
# The study's real-music corpus (docs/study-data.md): freely licensed game soundtracks (recorded
# audio only: ogg, opus, mp3; never MIDI or tracker modules) from Debian 12 packages.
#
#   bash scripts/study/fetch-music.sh DEST            # the 9 games of docs/results.md sections 2-7 (15.2 h)
#   bash scripts/study/fetch-music.sh DEST --more     # and 25 more games (about 35 h in all; section 8)
#
# writes
#   DEST/train/<game>/...            audio for pretraining (mart-preprocess --dataset.kind folder)
#   DEST/train.csv                   path,class  (class = the game; path relative to DEST/train)
#   DEST/covers/audio/<work>/...     alternate versions of the same composition
#   DEST/covers/list.tsv             work_id<TAB>path (--dataset.kind covers --input DEST/covers/list.tsv)
#   DEST/SOURCES.tsv                 package, version, .deb bytes, files taken
# The .debs are kept in $MART_STUDY_CACHE (default DEST/cache) and unpacked there with dpkg-deb -x;
# a rerun reuses them and rebuilds train/ and covers/ from scratch. Every work in covers/ is
# absent from train/ (supertuxkart-data is held out whole; from the other packages the works
# listed below are). Needs apt-get (run `apt-get update` first; `apt-get download` needs no root
# but a writable cache), dpkg-deb and unzip (two packages ship their music inside a .pk3 zip).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || "$1" == -* || ( $# -eq 2 && "$2" != --more ) ]]; then
  echo "usage: $0 DEST [--more]   (see docs/study-data.md)" >&2
  exit 2
fi
DEST=$1
MORE=${2:-}
CACHE=${MART_STUDY_CACHE:-$DEST/cache}
for tool in apt-get apt-cache dpkg-deb unzip md5sum; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (this script needs a Debian system)" >&2; exit 1; }
done

# Packages and the folder (inside the unpacked tree) that holds their music. "pk3:" means the
# music is inside that zip archive.
PACKAGES=(
  "wesnoth-1.16-music|usr/share/games/wesnoth/1.16/data/core/music"
  "warzone2100-music|usr/share/games/warzone2100/music"
  "nexuiz-music|pk3:usr/share/games/nexuiz/data/music.pk3|sound/cdtracks"
  "ufoai-music|pk3:usr/share/games/ufoai/base/0music.pk3|music"
  "hyperrogue-music|usr/share/hyperrogue/music"
  "singularity-music|usr/share/games/singularity/music"
  "drascula-music|usr/share/scummvm/drascula/audio"
  "asc-music|usr/share/games/asc/music"
  "supertux-data|usr/share/games/supertux2/music"
  "supertuxkart-data|usr/share/games/supertuxkart/data"
)
# --more (docs/study-data.md, "The larger corpus"): 25 more games, each with at least 8 tracks of
# 30 s or more.
MORE_PACKAGES=(
  "0ad-data|pk3:usr/share/games/0ad/mods/public/public.zip|audio/music"
  "naev-data|usr/share/naev/dat/snd/music"
  "widelands-data|usr/share/games/widelands/data/music"
  "hedgewars-data|usr/share/games/hedgewars/Data/Music"
  "blobwars-data|usr/share/games/blobwars/music"
  "berusky2-data|usr/share/games/berusky2/music"
  "colobot-common-sounds|usr/share/games/colobot/music"
  "marsshooter-data|usr/share/games/marsshooter/audio/music"
  "freedroidrpg-data|usr/share/freedroidrpg/data/sound/music"
  "unknown-horizons|usr/share/unknown-horizons/content/audio/music"
  "flare-game|usr/share/games/flare/mods/fantasycore/music"
  "trackballs-data|usr/share/games/trackballs/music"
  "pushover-data|usr/share/pushover/themes"
  "megaglest-data|usr/share/games/megaglest"
  "starfighter-data|usr/share/starfighter/music"
  "warmux-data|usr/share/games/warmux/music"
  "openclonk-data|usr/share/games/openclonk/Music.ocg"
  "fillets-ng-data|usr/share/games/fillets-ng/music"
  "wizznic-data|usr/share/games/wizznic/packs/000_wizznic/music"
  "davegnukem-data|usr/share/games/davegnukem/music/eric_matyas"
  "redeclipse-data|usr/share/games/redeclipse/data/sounds/music"
  "enigma-data|usr/share/games/enigma/music"
  "ardentryst|usr/share/games/ardentryst/Music"
  "adonthell-data|usr/share/games/adonthell/games/wastesedge/audio"
  "amoebax-data|usr/share/games/amoebax/music"
)
if [[ "$MORE" == --more ]]; then PACKAGES+=("${MORE_PACKAGES[@]}"); fi
# The class (game) of a package's tracks: the package name up to its first '-', unless named here.
declare -A CLASS_OF=([unknown-horizons]=unknownhorizons)
# Only files whose path under the music folder matches (a folder that also holds other sounds).
declare -A ONLY=([megaglest-data]='/music/[^/]+$')  # the menu's and each faction's music folder
# Music files without an extension (Ogg Vorbis), placed with ".ogg" added.
declare -A NO_EXTENSION=([blobwars-data]=ogg)
# Packages whose every track stays out of train/ (they give the cover versions).
HELD_OUT_PACKAGES="supertuxkart-data"
# Files (relative to the package's music folder) never used: not music (tests, effects).
SKIP=(
  "ufoai-music|dynamictest-battle-41-74sec.ogg"
  "ufoai-music|dynamictest-normal-08-35sec.ogg"
  "nexuiz-music|thunder.ogg"
  "widelands-data|menu.ogg"
  "adonthell-data|select.wav"
  "adonthell-data|switch.wav"
  "unknown-horizons|Peer Gynt Suite No. 1, Op. 46 - I. Morning.ogg"
)
# Cover versions: work_id|package|file relative to the package's music folder. Evidence for each
# (the game's own metadata or file names, and a chroma check) is in docs/study-data.md. The works
# named here are left out of train/ in all their versions.
COVERS=(
  "stk_celtic|supertuxkart-data|music/celtic.ogg"
  "stk_celtic|supertuxkart-data|music/celtic_fast.ogg"
  "stk_cocoa_river|supertuxkart-data|music/cocoa_river.ogg"
  "stk_cocoa_river|supertuxkart-data|music/cocoa_river_fast.ogg"
  "stk_farm|supertuxkart-data|music/farm.ogg"
  "stk_farm|supertuxkart-data|music/farm_f.ogg"
  "stk_jumping_to_the_stars|supertuxkart-data|music/jumping_to_the_stars_remake.ogg"
  "stk_jumping_to_the_stars|supertuxkart-data|music/jumping_to_the_stars_remake_fast.ogg"
  "stk_gran_paradiso|supertuxkart-data|music/landing_in_gran_paradiso.ogg"
  "stk_gran_paradiso|supertuxkart-data|music/landing_in_gran_paradiso_fast.ogg"
  "stk_ravenbridge_mansion|supertuxkart-data|music/ravenbridge_mansion.ogg"
  "stk_ravenbridge_mansion|supertuxkart-data|music/ravenbridge_mansion_fast.ogg"
  "stk_the_great_fair|supertuxkart-data|music/theGreatFair.ogg"
  "stk_the_great_fair|supertuxkart-data|music/theGreatFair_fast.ogg"
  "wz_menu|warzone2100-music|menu.opus"
  "wz_menu|warzone2100-music|albums/aftermath_soundtrack/menu_enhanced.opus"
  "wz_track3|warzone2100-music|albums/original_soundtrack/track3.opus"
  "wz_track3|warzone2100-music|albums/aftermath_soundtrack/track3_enhanced.opus"
  "nexuiz_sixtyfour|nexuiz-music|sixtyfour_.ogg"
  "nexuiz_sixtyfour|nexuiz-music|sixtyfour_revisited.ogg"
  "st_cave|supertux-data|antarctic/cave.ogg"
  "st_cave|supertux-data|retro/cave_old.ogg"
)
AUDIO_RE='\.(ogg|opus|mp3|flac|wav)$'
FORBIDDEN_RE='\.(mid|midi|mod|xm|it|s3m|umx|mptm)$'

field() { cut -d'|' -f"$2" <<<"$1"; }

mkdir -p "$CACHE/debs" "$CACHE/root"
# 1. Download (once) and unpack (once) each package.
for entry in "${PACKAGES[@]}"; do
  pkg=$(field "$entry" 1)
  if ! compgen -G "$CACHE/debs/${pkg}_*.deb" >/dev/null; then
    apt-cache show "$pkg" >/dev/null 2>&1 ||
      { echo "error: apt knows no package $pkg: run 'apt-get update' (Debian 12 'bookworm', section main)" >&2; exit 1; }
    echo "downloading $pkg"
    (cd "$CACHE/debs" && apt-get download -q "$pkg")
  fi
  if [[ ! -f "$CACHE/root/$pkg/.unpacked" ]]; then
    rm -rf "$CACHE/root/$pkg"
    mkdir -p "$CACHE/root/$pkg"
    dpkg-deb -x "$(compgen -G "$CACHE/debs/${pkg}_*.deb" | head -n1)" "$CACHE/root/$pkg"
    touch "$CACHE/root/$pkg/.unpacked"
  fi
done

# The folder of an entry's music (unzipping just that folder of a .pk3 archive, once).
entry_dir() {
  local entry=$1 pkg where inner
  pkg=$(field "$entry" 1) where=$(field "$entry" 2)
  if [[ "$where" == pk3:* ]]; then
    inner=$(field "$entry" 3)
    local zip="$CACHE/root/$pkg/${where#pk3:}" out="$CACHE/root/$pkg.pk3"
    if [[ ! -f "$out/.unpacked" ]]; then
      rm -rf "$out"
      unzip -q "$zip" "$inner/*" -d "$out"  # the music only (0ad's archive is 3 GB unpacked)
      touch "$out/.unpacked"
    fi
    echo "$out/$inner"
  else
    echo "$CACHE/root/$pkg/$where"
  fi
}
# The folder holding a package's music (its first entry).
music_dir() {
  local entry
  for entry in "${PACKAGES[@]}"; do
    [[ "$(field "$entry" 1)" == "$1" ]] && { entry_dir "$entry"; return; }
  done
  echo "error: no package $1 in PACKAGES" >&2
  exit 1
}

# Link (same file system) or copy.
place() { mkdir -p "$(dirname "$2")"; ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"; }

# 2. Covers, and the set of works they take out of train/.
rm -rf "$DEST/train" "$DEST/covers" "$DEST/train.csv"
mkdir -p "$DEST/covers/audio" "$DEST/train"
declare -A IN_COVERS=()
printf 'work_id\tpath\n' >"$DEST/covers/list.tsv"
for entry in "${COVERS[@]}"; do
  work=$(field "$entry" 1) pkg=$(field "$entry" 2) rel=$(field "$entry" 3)
  src="$(music_dir "$pkg")/$rel"
  [[ -f "$src" ]] || { echo "error: $pkg has no $rel (package changed? see docs/study-data.md)" >&2; exit 1; }
  out="audio/$work/${pkg%%-*}-$(basename "$rel")"
  place "$src" "$DEST/covers/$out"
  printf '%s\t%s\n' "$work" "$out" >>"$DEST/covers/list.tsv"
  IN_COVERS["$pkg|$rel"]=1
done

# 3. Train: every audio file of every package not held out, minus covers and skipped files.
declare -A SKIPPED=()
for s in "${SKIP[@]}"; do SKIPPED["$s"]=1; done
echo "path,class" >"$DEST/train.csv"
printf 'package\tversion\tdeb_bytes\ttrain_files\tcovers_files\n' >"$DEST/SOURCES.tsv"
for entry in "${PACKAGES[@]}"; do
  pkg=$(field "$entry" 1)
  dir=$(entry_dir "$entry")
  game=${CLASS_OF[$pkg]:-${pkg%%-*}}
  ext=${NO_EXTENSION[$pkg]:-}
  n_train=0
  if [[ " $HELD_OUT_PACKAGES " != *" $pkg "* ]]; then
    # Audio files by extension, or (NO_EXTENSION) every file without one.
    if [[ -n "$ext" ]]; then find_args=(-type f ! -name '*.*'); else find_args=(-type f -regextype posix-extended -iregex ".*$AUDIO_RE"); fi
    while IFS= read -r -d '' f; do
      rel=${f#"$dir"/}
      [[ -z "${IN_COVERS["$pkg|$rel"]:-}" && -z "${SKIPPED["$pkg|$rel"]:-}" ]] || continue
      [[ -z "${ONLY[$pkg]:-}" ]] || [[ "$rel" =~ ${ONLY[$pkg]} ]] || continue
      # train.csv is comma-separated: no comma in a placed name.
      out="$game/${rel//,/_}${ext:+.$ext}"
      place "$f" "$DEST/train/$out"
      echo "$out,$game" >>"$DEST/train.csv"
      n_train=$((n_train + 1))
    done < <(find "$dir" "${find_args[@]}" -print0 | sort -z)
  fi

  n_covers=$(grep -c "|$pkg|" <(printf '%s\n' "${COVERS[@]}") || true)
  deb=$(compgen -G "$CACHE/debs/${pkg}_*.deb" | head -n1)
  printf '%s\t%s\t%s\t%s\t%s\n' "$pkg" "$(dpkg-deb -f "$deb" Version)" "$(stat -c %s "$deb")" "$n_train" "$n_covers" \
    >>"$DEST/SOURCES.tsv"
done

# 4. Checks: no MIDI or tracker module anywhere, no file (by content) both in train/ and covers/.
if find "$DEST/train" "$DEST/covers" -type f -regextype posix-extended -iregex ".*$FORBIDDEN_RE" | grep -q .; then
  echo "error: a MIDI or tracker file reached $DEST (these are reserved for held-out checks)" >&2
  exit 1
fi
dups=$(comm -12 <(find "$DEST/train" -type f -exec md5sum {} + | cut -d' ' -f1 | sort -u) \
                <(find "$DEST/covers" -type f -exec md5sum {} + | cut -d' ' -f1 | sort -u))
[[ -z "$dups" ]] || { echo "error: files in both train/ and covers/ (md5 $dups)" >&2; exit 1; }

n_train=$(($(wc -l <"$DEST/train.csv") - 1))
n_versions=$(($(wc -l <"$DEST/covers/list.tsv") - 1))
n_works=$(tail -n +2 "$DEST/covers/list.tsv" | cut -f1 | sort -u | wc -l)
echo "train: $n_train files, $(du -sh "$DEST/train" | cut -f1) in $DEST/train (labels $DEST/train.csv)"
echo "covers: $n_works works, $n_versions versions in $DEST/covers/list.tsv"
