#!/bin/sh
# Install Sfumato for this user: the app in ~/.local/share/sfumato, a launcher in the applications menu.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
target="$data/sfumato"
mkdir -p "$target" "$data/applications" "$data/icons/hicolor/256x256/apps" "$data/icons/hicolor/scalable/apps" "$HOME/.local/bin"
rm -rf "$target/Sfumato"
cp -R "$here/Sfumato" "$target/Sfumato"
cp "$here/sfumato.png" "$data/icons/hicolor/256x256/apps/sfumato.png"
cp "$here/sfumato.svg" "$data/icons/hicolor/scalable/apps/sfumato.svg"
ln -sf "$target/Sfumato/Sfumato" "$HOME/.local/bin/sfumato"
sed "s|^Exec=sfumato|Exec=$target/Sfumato/Sfumato|" "$here/sfumato.desktop" > "$data/applications/sfumato.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" || true
echo "Sfumato is installed: find it in your applications menu, or run $HOME/.local/bin/sfumato"

# Qt's X11 window plugin needs xcb libraries many desktops lack (libxcb-cursor0 since Qt 6.5); without them
# the app stops with a message that names no package. Ask the dynamic loader about the bundled plugin.
# The package names match desktop/platform_check.py.
package_for() {
    case "$1" in
        libxcb-cursor.so.0) echo libxcb-cursor0 ;;
        libxcb-icccm.so.4) echo libxcb-icccm4 ;;
        libxcb-image.so.0) echo libxcb-image0 ;;
        libxcb-keysyms.so.1) echo libxcb-keysyms1 ;;
        libxcb-randr.so.0) echo libxcb-randr0 ;;
        libxcb-render-util.so.0) echo libxcb-render-util0 ;;
        libxcb-render.so.0) echo libxcb-render0 ;;
        libxcb-shape.so.0) echo libxcb-shape0 ;;
        libxcb-shm.so.0) echo libxcb-shm0 ;;
        libxcb-sync.so.1) echo libxcb-sync1 ;;
        libxcb-util.so.1) echo libxcb-util1 ;;
        libxcb-xfixes.so.0) echo libxcb-xfixes0 ;;
        libxcb-xkb.so.1) echo libxcb-xkb1 ;;
        libxcb.so.1) echo libxcb1 ;;
        libX11-xcb.so.1) echo libx11-xcb1 ;;
        libX11.so.6) echo libx11-6 ;;
        libxkbcommon.so.0) echo libxkbcommon0 ;;
        libxkbcommon-x11.so.0) echo libxkbcommon-x11-0 ;;
        *) echo "$1" ;;
    esac
}
plugin=$(find "$target/Sfumato" -name libqxcb.so 2>/dev/null | head -n 1)
if [ -n "$plugin" ] && command -v ldd >/dev/null 2>&1; then
    missing=$(ldd "$plugin" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ' | sed 's/ *$//')
    if [ -n "$missing" ]; then
        packages=""
        for library in $missing; do
            package=$(package_for "$library")
            case " $packages " in *" $package "*) ;; *) packages="${packages:+$packages }$package" ;; esac
        done
        echo "Sfumato cannot open its window: Qt's X11 (xcb) support needs libraries that are missing" \
             "($(echo "$missing" | sed 's/ /, /g')); on Debian or Ubuntu install them with:" \
             "sudo apt install $packages" >&2
    fi
fi
