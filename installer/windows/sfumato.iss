; Inno Setup script for Sfumato (https://jrsoftware.org/isinfo.php), built by installer/build.py on Windows:
;   ISCC /DAppVersion=0.1.0 /DSourceDir=dist\Sfumato /DIconFile=build\icons\sfumato.ico /Odist installer\windows\sfumato.iss
; Installs per user by default (no administrator needed; the dialog offers all users), adds a Start menu
; entry and an optional desktop icon, registers .ora files, and uninstalls cleanly. Pictures, models and
; settings live in the user's folders and are kept on uninstall.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\Sfumato"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\icons\sfumato.ico"
#endif

[Setup]
AppId={{6C1C3B7E-5A0F-4E4B-9B7C-2F5E8D1A9C41}
AppName=Sfumato
AppVersion={#AppVersion}
AppPublisher=Sfumato
AppPublisherURL=https://sfumato.app
DefaultDirName={autopf}\Sfumato
DefaultGroupName=Sfumato
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=Sfumato-{#AppVersion}-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\Sfumato.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
LicenseFile=..\..\LICENSE
ChangesAssociations=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "associate"; Description: "Open OpenRaster (.ora) pictures with Sfumato"; GroupDescription: "Files:"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Sfumato"; Filename: "{app}\Sfumato.exe"
Name: "{group}\Uninstall Sfumato"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Sfumato"; Filename: "{app}\Sfumato.exe"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "Software\Classes\.ora\OpenWithProgids"; ValueType: string; ValueName: "Sfumato.ora"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\Sfumato.ora"; ValueType: string; ValueName: ""; ValueData: "OpenRaster picture"; Flags: uninsdeletekey; Tasks: associate
Root: HKA; Subkey: "Software\Classes\Sfumato.ora\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\Sfumato.exe,0"; Tasks: associate
Root: HKA; Subkey: "Software\Classes\Sfumato.ora\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\Sfumato.exe"" ""%1"""; Tasks: associate

[Run]
Filename: "{app}\Sfumato.exe"; Description: "{cm:LaunchProgram,Sfumato}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only what the app itself wrote inside its folder (PyInstaller never writes there; this is a safety net).
Type: filesandordirs; Name: "{app}\__pycache__"
