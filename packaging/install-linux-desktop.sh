#!/usr/bin/env bash
# Install imgfinder's desktop integration (menu entry, icons, AppStream metainfo) for one user
# or system-wide, following the XDG base directory spec.
#
#   packaging/install-linux-desktop.sh              # into ${XDG_DATA_HOME:-~/.local/share}
#   packaging/install-linux-desktop.sh --prefix /usr/local/share   # system-wide (as root)
#   packaging/install-linux-desktop.sh --exec /opt/imgfinder/imgfinder   # a bundle not on PATH
#   packaging/install-linux-desktop.sh --uninstall  # remove what it installed
#
# The menu entry runs `imgfinder gui`, so `imgfinder` must be on PATH (pip install ., pipx) unless
# --exec names the executable (e.g. the PyInstaller bundle's dist/imgfinder/imgfinder).
set -euo pipefail

APP_ID="io.github.imgfinder.ImgFinder"
ICON_NAME="imgfinder"
SIZES=(16 24 32 48 64 128 256 512)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
resources="$(cd "$here/../resources" && pwd)"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
uninstall=0
exec_path=""

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix)
            [[ $# -ge 2 ]] || { echo "--prefix needs a directory" >&2; exit 2; }
            data_home="$2"
            shift 2
            ;;
        --exec)
            [[ $# -ge 2 ]] || { echo "--exec needs the path of the imgfinder executable" >&2; exit 2; }
            exec_path="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
            [[ -x "$exec_path" ]] || { echo "not an executable: $exec_path" >&2; exit 2; }
            # Keep the Exec= line free of desktop-entry quoting rules and sed metacharacters.
            safe_path='^[A-Za-z0-9._/+@-]+$'
            [[ "$exec_path" =~ $safe_path ]] || {
                echo "--exec path may only contain letters, digits and . _ / + @ -" >&2
                exit 2
            }
            shift 2
            ;;
        --uninstall) uninstall=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

apps_dir="$data_home/applications"
icons_dir="$data_home/icons/hicolor"
metainfo_dir="$data_home/metainfo"
desktop_target="$apps_dir/$APP_ID.desktop"
metainfo_target="$metainfo_dir/$APP_ID.metainfo.xml"

refresh_caches() {
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$apps_dir" || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [[ -f "$icons_dir/index.theme" ]]; then
        gtk-update-icon-cache -q -f "$icons_dir" || true
    fi
    if command -v xdg-icon-resource >/dev/null 2>&1; then
        xdg-icon-resource forceupdate || true
    fi
}

if [[ $uninstall -eq 1 ]]; then
    rm -f "$desktop_target" "$metainfo_target" "$icons_dir/scalable/apps/$ICON_NAME.svg"
    for size in "${SIZES[@]}"; do
        rm -f "$icons_dir/${size}x${size}/apps/$ICON_NAME.png"
    done
    refresh_caches
    echo "removed imgfinder desktop integration from $data_home"
    exit 0
fi

# The desktop file is installed under the app id, which is what the metainfo's launchable names.
install -Dm644 "$resources/imgfinder.desktop" "$desktop_target"
if [[ -n "$exec_path" ]]; then
    sed -i -e "s|^Exec=imgfinder |Exec=$exec_path |" -e "s|^TryExec=imgfinder\$|TryExec=$exec_path|" \
        "$desktop_target"
fi
install -Dm644 "$resources/$APP_ID.metainfo.xml" "$metainfo_target"
install -Dm644 "$resources/icons/imgfinder.svg" "$icons_dir/scalable/apps/$ICON_NAME.svg"
for size in "${SIZES[@]}"; do
    install -Dm644 "$resources/icons/hicolor/${size}x${size}/apps/$ICON_NAME.png" \
        "$icons_dir/${size}x${size}/apps/$ICON_NAME.png"
done

refresh_caches

if [[ -z "$exec_path" ]] && ! command -v imgfinder >/dev/null 2>&1; then
    echo "note: 'imgfinder' is not on PATH; the menu entry needs it (see packaging/README.md)" >&2
fi
echo "installed imgfinder desktop integration into $data_home"
