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
