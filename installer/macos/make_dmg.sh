#!/bin/bash
# Make a drag-to-Applications disk image of Sfumato.app (on macOS; needs hdiutil, which macOS has).
#   installer/macos/make_dmg.sh dist/Sfumato.app 0.1.0 dist
# Without a Developer ID, the app is ad-hoc signed: people open it the first time with right-click > Open.
# With one, set SFUMATO_SIGN_IDENTITY and (for notarization) SFUMATO_NOTARY_PROFILE.
set -euo pipefail
app=$1; version=$2; out=$3
[ -d "$app" ] || { echo "no $app: build it first (python installer/build.py)"; exit 1; }
identity=${SFUMATO_SIGN_IDENTITY:--}
codesign --force --deep --options runtime --sign "$identity" "$app"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
dmg="$out/Sfumato-$version.dmg"
rm -f "$dmg"
hdiutil create -volname "Sfumato $version" -srcfolder "$staging" -fs HFS+ -format UDZO -ov "$dmg"
if [ -n "${SFUMATO_NOTARY_PROFILE:-}" ] && [ "$identity" != "-" ]; then
  xcrun notarytool submit "$dmg" --keychain-profile "$SFUMATO_NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
echo "$dmg"
