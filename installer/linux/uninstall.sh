#!/bin/sh
# Remove what install.sh put in place. Your pictures, models and settings stay where they are.
set -eu
data=${XDG_DATA_HOME:-$HOME/.local/share}
rm -rf "$data/sfumato"
rm -f "$data/applications/sfumato.desktop" "$data/icons/hicolor/256x256/apps/sfumato.png" \
      "$data/icons/hicolor/scalable/apps/sfumato.svg" "$HOME/.local/bin/sfumato"
echo "Sfumato is uninstalled. Your pictures, models and settings were kept."
