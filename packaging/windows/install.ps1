#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs kinship as a Windows service, or upgrades an installed one.

.DESCRIPTION
    1. Stops the kinship service if it is installed and running (an upgrade).
    2. Copies kinship.exe to "$env:ProgramFiles\kinship".
    3. Creates "$env:ProgramData\kinship" with state\ and logs\ below it, and writes a starting
       config (kinship.yaml) there unless one exists. Edit it before starting the service.
    4. Registers the service with `kinship service install` (automatic start, restart on
       failure), which checks the config first.
    5. Sets conservative permissions: "$env:ProgramData\kinship" stops inheriting from
       ProgramData; SYSTEM and Administrators have full control; the service account may read
       the config and change only state\ and logs\. Users get nothing (the config may hold
       credentials). Each -ReadPath is made readable by the service account.
    6. With -Start, starts the service.

.PARAMETER Exe
    The kinship.exe to install. Default: kinship.exe next to this script.

.PARAMETER Account
    The account the service runs as. Default: the virtual account "NT SERVICE\kinship", which
    can read only what it is granted (see -ReadPath). "LocalSystem" reads everything.

.PARAMETER ReadPath
    Directories of log files to tail; the service account is granted read access to each.

.PARAMETER Region
    The AWS region written into a new config.

.PARAMETER Stream
    The Kinesis data stream written into a new config.

.PARAMETER Files
    The glob of files to tail written into a new config.

.PARAMETER Start
    Start the service once installed.

.EXAMPLE
    .\install.ps1 -ReadPath C:\inetpub\logs\LogFiles -Files 'C:\inetpub\logs\LogFiles\W3SVC1\*.log' -Stream web-logs -Region eu-west-1 -Start
#>
[CmdletBinding()]
param(
    [string] $Exe = (Join-Path $PSScriptRoot 'kinship.exe'),
    [string] $Account = 'NT SERVICE\kinship',
    [string[]] $ReadPath = @(),
    [string] $Region = 'us-east-1',
    [string] $Stream = 'app-logs',
    [string] $Files = 'C:\logs\*.log',
    [switch] $Start
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$ServiceName = 'kinship'
$InstallDir = Join-Path $env:ProgramFiles 'kinship'
$Installed = Join-Path $InstallDir 'kinship.exe'
$DataDir = Join-Path $env:ProgramData 'kinship'
$StateDir = Join-Path $DataDir 'state'
$LogDir = Join-Path $DataDir 'logs'
$Config = Join-Path $DataDir 'kinship.yaml'
# Well-known SIDs, so the script works whatever the system's language.
$System = '*S-1-5-18'
$Administrators = '*S-1-5-32-544'

function Invoke-Kinship {
    & $Installed @args
    if ($LASTEXITCODE -ne 0) {
        throw "kinship $($args -join ' ') failed with exit status $LASTEXITCODE"
    }
}

function Invoke-Icacls {
    & icacls.exe @args | Out-Null
    if ($LASTEXITCODE -ne 0) {
        throw "icacls $($args -join ' ') failed with exit status $LASTEXITCODE"
    }
}

if (-not (Test-Path -LiteralPath $Exe -PathType Leaf)) {
    throw "no kinship.exe at $Exe; pass -Exe PATH"
}

$service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($service -and $service.Status -ne 'Stopped') {
    Write-Host "Stopping the running service (it sends what it read first)"
    Invoke-Kinship service stop
}

Write-Host "Copying kinship.exe to $InstallDir"
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Copy-Item -LiteralPath $Exe -Destination $Installed -Force

foreach ($dir in $DataDir, $StateDir, $LogDir) {
    New-Item -ItemType Directory -Force -Path $dir | Out-Null
}
# Before anything is written into it: only SYSTEM and Administrators, nothing inherited.
Invoke-Icacls $DataDir /inheritance:r /grant:r "${System}:(OI)(CI)F" "${Administrators}:(OI)(CI)F"

if (-not (Test-Path -LiteralPath $Config)) {
    Write-Host "Writing a starting config to $Config; edit it before starting the service"
    $yaml = @"
# kinship configuration: see the README for every key, and check it with
#   & "$Installed" check --config "$Config"
state_dir: '$StateDir'
log_file: '$LogDir\kinship.log'
aws:
  region: $Region
flows:
  - name: app
    files: '$Files'
    kinesis_stream: $Stream
"@
    # UTF-8 without a byte order mark.
    [System.IO.File]::WriteAllText($Config, $yaml, (New-Object System.Text.UTF8Encoding $false))
}

if (-not $service) {
    Write-Host "Registering the service"
    Invoke-Kinship service install --config $Config --account $Account
} else {
    Write-Host "The service is already registered; kinship.exe was replaced"
}

if ($Account -notin @('LocalSystem', '')) {
    # The account exists once the service does (a virtual account is made with it).
    $grantee = if ($Account -eq 'LocalService') { '*S-1-5-19' } else { $Account }
    Invoke-Icacls $DataDir /grant "${grantee}:(OI)(CI)RX"
    Invoke-Icacls $StateDir /grant "${grantee}:(OI)(CI)M"
    Invoke-Icacls $LogDir /grant "${grantee}:(OI)(CI)M"
    foreach ($path in $ReadPath) {
        Write-Host "Granting $Account read access to $path"
        Invoke-Icacls $path /grant "${grantee}:(OI)(CI)RX"
    }
}

if ($Start) {
    Invoke-Kinship service start
} else {
    Write-Host "Installed. Edit $Config if needed, then: & `"$Installed`" service start"
}
Write-Host "Status: sc.exe query $ServiceName; logs: $LogDir\kinship.log"
