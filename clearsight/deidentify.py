"""De-identified DICOM copies, patient pseudonyms and the per-installation secret.

A DICOM file carries its patient's identity next to the pixels: name, id,
birth date, accession number, institution, physicians, dates and times, free
text, private tags, overlays. Clearsight never stores such a file. What it
stores, serves from and shows is a **copy built by construction**
(:func:`deidentify`): a new DICOM Part 10 file that holds the pixel data, as
stored (compressed data stays compressed, in its transfer syntax), and the
technical attributes needed to decode it the same way (:data:`KEPT_ATTRIBUTES`),
nothing else. Anything not on that allow-list is gone, whatever the file held:
private tags, overlays (60xx) and curves (50xx), free-text fields, dates,
every identifying attribute, including ones a deny-list would not know.

This is what DICOM PS3.15 Annex E, the *Basic Application Level
Confidentiality Profile* (Table E.1-1), amounts to for images used only for
their pixels: every attribute the profile removes or empties is absent or
empty here (its Type 2 identifying attributes are written empty, action Z),
the instance, series and study UIDs are replaced (action U), and the copy says
so: ``PatientIdentityRemoved = YES``, ``DeidentificationMethod`` and the code
``113100`` (Basic Application Confidentiality Profile, DICOM PS3.16 CID 7050)
in ``DeidentificationMethodCodeSequence``
(https://dicom.nema.org/medical/dicom/current/output/html/part15.html#chapter_E).
The profile does not clean pixels: text burned into the image
(``BurnedInAnnotation = YES``) is kept as an attribute, and ingestion skips such
images by default (:mod:`clearsight.dicom`).

The copy is deterministic: its new UIDs are derived from a SHA-256 of what it
keeps (pydicom's :func:`~pydicom.uid.generate_uid` with that digest as
entropy), so the same file always gives the same bytes, hence the same content
address, and de-identifying a copy again gives the copy itself.

Patient-level splits need to know which images share a patient without
keeping who it is: :func:`patient_id` reads the ``PatientID`` alone and
:func:`pseudonym` turns it into an HMAC-SHA256 (RFC 2104) keyed with the
installation's secret (:func:`load_pseudonym_key`), so the group of an image is
stable for one installation and meaningless without its key.

Framework-free: pydicom only (no ZenML, nothing of ``stack/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import secrets
import unicodedata
from collections.abc import Mapping
from pathlib import Path

from pydicom import dcmread
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from clearsight.dicom import is_dicom
from clearsight.errors import InvalidImageError

__all__ = [
    "DEFAULT_KEY_FILE",
    "KEPT_ATTRIBUTES",
    "PSEUDONYM_KEY_ENV",
    "DeidentificationError",
    "deidentify",
    "is_dicom",
    "load_pseudonym_key",
    "patient_id",
    "pseudonym",
    "stored_copy",
]

#: The environment variable holding the pseudonym key (hex, at least 64 digits).
PSEUDONYM_KEY_ENV = "CLEARSIGHT_PSEUDONYM_KEY"
#: The repository this package is installed from (``pip install -e .``), as
#: :mod:`clearsight.catalog` resolves it, and its state folder.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / ".state"
#: Where the key is generated when :data:`PSEUDONYM_KEY_ENV` is not set (folder
#: 0700, file 0600, never in git: ``.state/`` is ignored).
DEFAULT_KEY_FILE = STATE_DIR / "secrets" / "pseudonym.key"
#: Bytes of a generated key; also the shortest key accepted (RFC 2104, section
#: 3: keys shorter than the hash output, 32 bytes for SHA-256, are discouraged).
KEY_BYTES = 32

#: ``DeidentificationMethod`` of every copy (LO: at most 64 characters).
DEIDENTIFICATION_METHOD = "PS3.15 E.1 Basic Profile: Clearsight allow-list copy"
_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

#: The attributes a copy keeps, by keyword: those of the Image Pixel, Multi-frame,
#: Modality LUT, VOI LUT and Presentation LUT modules that decoding reads, plus
#: what says how the pixels were made (SOP class, modality, image type, lossy
#: compression, burned-in annotation, pixel spacing). A sequence's value is the
#: allow-list of its items' attributes (``None``: not a sequence, kept as is).
#: Free text (``LUTExplanation``, ``WindowCenterWidthExplanation``) is left out.
KEPT_ATTRIBUTES: dict[str, dict | None] = {
    "SOPClassUID": None,
    "ImageType": None,
    "Modality": None,
    "SamplesPerPixel": None,
    "PhotometricInterpretation": None,
    "PlanarConfiguration": None,
    "NumberOfFrames": None,
    "Rows": None,
    "Columns": None,
    "PixelSpacing": None,
    "ImagerPixelSpacing": None,
    "PixelSpacingCalibrationType": None,
    "PixelAspectRatio": None,
    "BitsAllocated": None,
    "BitsStored": None,
    "HighBit": None,
    "PixelRepresentation": None,
    "SmallestImagePixelValue": None,
    "LargestImagePixelValue": None,
    "PixelPaddingValue": None,
    "PixelPaddingRangeLimit": None,
    "BurnedInAnnotation": None,
    "RecognizableVisualFeatures": None,
    "PixelIntensityRelationship": None,
    "PixelIntensityRelationshipSign": None,
    "WindowCenter": None,
    "WindowWidth": None,
    "RescaleIntercept": None,
    "RescaleSlope": None,
    "RescaleType": None,
    "VOILUTFunction": None,
    "LossyImageCompression": None,
    "LossyImageCompressionRatio": None,
    "LossyImageCompressionMethod": None,
    "ModalityLUTSequence": {"LUTDescriptor": None, "ModalityLUTType": None, "LUTData": None},
    "VOILUTSequence": {"LUTDescriptor": None, "LUTData": None},
    "PresentationLUTShape": None,
    "RedPaletteColorLookupTableDescriptor": None,
    "GreenPaletteColorLookupTableDescriptor": None,
    "BluePaletteColorLookupTableDescriptor": None,
    "RedPaletteColorLookupTableData": None,
    "GreenPaletteColorLookupTableData": None,
    "BluePaletteColorLookupTableData": None,
    "SegmentedRedPaletteColorLookupTableData": None,
    "SegmentedGreenPaletteColorLookupTableData": None,
    "SegmentedBluePaletteColorLookupTableData": None,
    "ExtendedOffsetTable": None,
    "ExtendedOffsetTableLengths": None,
    "FloatPixelData": None,
    "DoubleFloatPixelData": None,
    "PixelData": None,
}
_FRAME_GROUP = {
    "PixelValueTransformationSequence": {
        "RescaleIntercept": None,
        "RescaleSlope": None,
        "RescaleType": None,
    },
    "FrameVOILUTSequence": {"WindowCenter": None, "WindowWidth": None, "VOILUTFunction": None},
}
# Enhanced multi-frame objects keep their rescale and window per frame or shared.
KEPT_ATTRIBUTES["SharedFunctionalGroupsSequence"] = _FRAME_GROUP
KEPT_ATTRIBUTES["PerFrameFunctionalGroupsSequence"] = _FRAME_GROUP

#: PS3.15 Table E.1-1 attributes of Type 2 in the image IODs: present, empty (action Z).
EMPTIED_ATTRIBUTES = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "SeriesNumber",
    "InstanceNumber",
)
_PATIENT_ID = 0x00100020
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class DeidentificationError(InvalidImageError):
    """The bytes cannot be de-identified (not DICOM, no pixel data, unreadable)."""


def _read(data: bytes, **kwargs: object):
    if not is_dicom(data):
        raise DeidentificationError(
            "not a DICOM Part 10 file (no 'DICM' after the 128-byte preamble, DICOM PS3.10)"
        )
    try:
        return dcmread(io.BytesIO(data), **kwargs)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on bad input
        # Only the type is quoted: a parser's message may quote the bytes it read.
        raise DeidentificationError(
            f"unreadable DICOM file: pydicom cannot parse it ({type(error).__name__})"
        ) from None


def patient_id(data: bytes) -> str | None:
    """Read the ``PatientID`` (0010,0020) of a DICOM file, and nothing else.

    Only that attribute and the character set it is written in are parsed
    (pydicom's ``specific_tags``); nothing is kept.

    Args:
        data: The DICOM Part 10 file's bytes.

    Returns:
        The patient id (Unicode NFC, surrounding spaces stripped), or None
        when the file has none or an empty one.

    Raises:
        DeidentificationError: When ``data`` is not a readable DICOM file.
    """
    dataset = _read(
        data, stop_before_pixels=True, specific_tags=["SpecificCharacterSet", "PatientID"]
    )
    element = dataset.get_item(_PATIENT_ID)
    value = element.value if element is not None else None
    if isinstance(value, bytes):
        # Decoded here, not by pydicom's value conversion: its validation warnings
        # quote the value, and warnings end up in logs.
        charset = dataset.get("SpecificCharacterSet")
        value = decode_bytes(value, convert_encodings(charset), {0x5C})
    text = unicodedata.normalize("NFC", str(value or "")).strip(" \x00")
    return text or None


def pseudonym(value: str, secret: bytes) -> str:
    """The keyed hash standing for ``value``: HMAC-SHA256, as hex.

    HMAC (RFC 2104, https://www.rfc-editor.org/rfc/rfc2104) with SHA-256: the
    same value and secret always give the same pseudonym; without the secret
    nobody can compute it from a guessed patient id.

    Args:
        value: The identifier (a ``PatientID``), hashed as UTF-8.
        secret: The installation's key (:func:`load_pseudonym_key`), at
            least :data:`KEY_BYTES` bytes.

    Returns:
        64 lowercase hex digits.

    Raises:
        ValueError: When the secret is shorter than :data:`KEY_BYTES` bytes.
    """
    if len(secret) < KEY_BYTES:
        raise ValueError(
            f"the pseudonym key has {len(secret)} bytes; at least {KEY_BYTES} are needed "
            "(RFC 2104, section 3)"
        )
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _parse_key(text: str, where: str) -> bytes:
    text = text.strip()
    hint = f'generate one with: python -c "import secrets; print(secrets.token_hex({KEY_BYTES}))"'
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(
            f"the pseudonym key in {where} is not hexadecimal; it must be at least "
            f"{2 * KEY_BYTES} hex digits ({hint})"
        ) from None
    if len(key) < KEY_BYTES:
        raise ValueError(
            f"the pseudonym key in {where} has {len(key)} bytes; at least {KEY_BYTES} "
            f"({2 * KEY_BYTES} hex digits) are needed ({hint})"
        )
    return key


def load_pseudonym_key(path: Path | None = None, environ: Mapping[str, str] | None = None) -> bytes:
    """The installation's pseudonym key: from the environment, else from its file.

    :data:`PSEUDONYM_KEY_ENV` wins when set (production: a secret of the
    orchestrator, the compose file or Kubernetes). Otherwise the key file is
    read, or created once with :func:`secrets.token_bytes` (folder mode 0700,
    file mode 0600, written as hex); concurrent first uses agree on one key
    (the file is linked into place, never overwritten). Changing the key
    changes every patient's group, hence possibly its split (README, *DICOM*).

    Args:
        path: The key file (default :data:`DEFAULT_KEY_FILE`, in the
            repository's ``.state`` folder).
        environ: Where to read :data:`PSEUDONYM_KEY_ENV` (default ``os.environ``).

    Returns:
        The key, at least :data:`KEY_BYTES` bytes.

    Raises:
        ValueError: When the variable or the file holds something else than
            at least 64 hex digits.
        OSError: When the file cannot be read or created.
    """
    env = os.environ if environ is None else environ
    value = env.get(PSEUDONYM_KEY_ENV, "").strip()
    if value:
        return _parse_key(value, PSEUDONYM_KEY_ENV)
    path = Path(path or DEFAULT_KEY_FILE)
    if not path.exists():
        _create_key_file(path)
    return _parse_key(path.read_text(), str(path))


def _create_key_file(path: Path) -> None:
    """Write a new key at ``path`` unless another process did first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
        with contextlib.suppress(FileExistsError):  # another process was first: its key wins
            os.link(temporary, path)  # atomic, and never replaces a key already there
    finally:
        temporary.unlink(missing_ok=True)


def _copy_allowed(source: Dataset, target: Dataset, allowed: Mapping[str, dict | None]) -> None:
    """Copy the allowed attributes of ``source`` into ``target`` (sequences item by item)."""
    for keyword, nested in allowed.items():
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in source:
            continue
        element = source[tag]
        if nested is None:
            target.add(element)
            continue
        if element.VR != "SQ":
            continue
        items = []
        for item in element.value or []:
            kept = Dataset()
            _copy_allowed(item, kept, nested)
            items.append(kept)
        target.add_new(tag, "SQ", Sequence(items))


def _transfer_syntax(dataset: Dataset) -> UID:
    """The file's transfer syntax; inferred from its encoding for native pixel data only."""
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(str(syntax))
    implicit, little = dataset.original_encoding
    if implicit is None or little is None:
        raise DeidentificationError("the DICOM file names no transfer syntax (0002,0010)")
    if "PixelData" in dataset and dataset["PixelData"].is_undefined_length:
        raise DeidentificationError(
            "the DICOM file names no transfer syntax (0002,0010) for its compressed pixel data"
        )
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _write(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def deidentify(data: bytes) -> bytes:
    """A de-identified copy of a DICOM file: its pixels and how to decode them, nothing else.

    The copy is a new DICOM Part 10 file in the original transfer syntax (its
    pixel data byte for byte, compressed or not) holding only
    :data:`KEPT_ATTRIBUTES`, with new SOP instance, series and study UIDs
    derived from its content, the identifying Type 2 attributes
    :data:`EMPTIED_ATTRIBUTES` present and empty, ``PatientIdentityRemoved =
    YES``, ``LongitudinalTemporalInformationModified = REMOVED`` and the
    method (DICOM PS3.15 Annex E, Basic Application Level Confidentiality
    Profile). It decodes to the same pixels as the original.

    Deterministic and idempotent: the same file gives the same bytes, and a
    copy gives itself back.

    Args:
        data: The DICOM Part 10 file's bytes.

    Returns:
        The copy's bytes (a DICOM Part 10 file: preamble, ``DICM``, file meta).

    Raises:
        DeidentificationError: When ``data`` is not a readable DICOM file, has
            no pixel data or names no usable transfer syntax.
    """
    source = _read(data)
    if not any(keyword in source for keyword in _PIXEL_KEYWORDS):
        raise DeidentificationError("the DICOM file has no pixel data (7FE0,0010)")
    syntax = _transfer_syntax(source)
    try:
        copy = Dataset()
        _copy_allowed(source, copy, KEPT_ATTRIBUTES)
        for keyword in EMPTIED_ATTRIBUTES:
            setattr(copy, keyword, "")
        copy.PatientIdentityRemoved = "YES"
        copy.DeidentificationMethod = DEIDENTIFICATION_METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _PROFILE_CODE
        copy.DeidentificationMethodCodeSequence = Sequence([code])
        copy.LongitudinalTemporalInformationModified = "REMOVED"
        copy.file_meta = FileMetaDataset()
        copy.file_meta.TransferSyntaxUID = syntax
        copy.file_meta.MediaStorageSOPClassUID = copy.get("SOPClassUID") or UID(
            "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
        )
        copy.file_meta.MediaStorageSOPInstanceUID = UID("1.2")  # placeholder, replaced below
        copy.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        copy.file_meta.ImplementationVersionName = "CLEARSIGHT_DEID"
        if "SOPClassUID" not in copy:
            copy.SOPClassUID = copy.file_meta.MediaStorageSOPClassUID
        # The UIDs come from the content without them, so a copy maps to itself.
        digest = hashlib.sha256(_write(copy)).hexdigest()
        instance, series, study = (
            generate_uid(entropy_srcs=[digest, role]) for role in ("instance", "series", "study")
        )
        copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = instance
        copy.SeriesInstanceUID = series
        copy.StudyInstanceUID = study
        return _write(copy)
    except Exception as error:  # noqa: BLE001 - a kept attribute pydicom cannot convert
        raise DeidentificationError(
            f"the DICOM file cannot be rewritten: an image attribute is invalid "
            f"({type(error).__name__})"
        ) from None


def stored_copy(data: bytes) -> bytes:
    """What Clearsight keeps of an image file: a DICOM file's de-identified copy, else ``data``.

    The one rule every writer of image bytes follows (the content store at
    ingestion, the prediction log's kept images, the review queue, the review
    app's uploads): identifying DICOM attributes are never written anywhere.

    Args:
        data: An image file's bytes, of any supported format.

    Returns:
        :func:`deidentify` of ``data`` for a DICOM file (:func:`is_dicom`),
        otherwise ``data`` itself.

    Raises:
        DeidentificationError: When ``data`` is a DICOM file that cannot be
            de-identified (nothing of it should be kept then).
    """
    return deidentify(data) if is_dicom(data) else data
