"""DICOM test files built in memory with pydicom, and pydicom's shipped samples.

:func:`dicom_bytes` writes a DICOM Part 10 file (128-byte preamble, ``DICM``,
File Meta Information) around a NumPy array, with the attributes the decoding
rules of :mod:`clearsight.dicom` depend on: photometric interpretation,
BitsStored, rescale, window centre/width, VOI LUT and Modality LUT
Sequences, frames, BurnedInAnnotation, and identifying values (PatientName,
PatientID...) for privacy tests. :func:`relabelled` rewrites a file's
transfer syntax without re-encoding its pixels, for codec refusals.
:func:`sample` reads a file shipped in pydicom's wheel (anonymised real
images: CT, MR, CR, compressed variants).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "UNCOMPRESSED",
    "Lut",
    "dicom_bytes",
    "dicom_without_pixels",
    "relabelled",
    "sample",
    "sample_path",
]

# Transfer syntaxes dicom_bytes writes: the uncompressed ones, plus RLE
# Lossless (pydicom's own encoder); anything else needs relabelled().
UNCOMPRESSED = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
_SOP_CLASSES = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "CT": CTImageStorage,
    "MR": MRImageStorage,
}
# SOP classes of objects without pixels, by modality (default: Basic Text SR).
_NO_PIXELS = {
    "SR": BasicTextSRStorage,
    "PR": GrayscaleSoftcopyPresentationStateStorage,
}


@dataclass(frozen=True)
class Lut:
    """A Modality or VOI LUT (PS3.3 C.11.1.1, C.11.2.1.1).

    Attributes:
        first_mapped: The stored (or modality) value mapped to ``entries[0]``
            (LUT Descriptor, second value); lower inputs take the first
            entry, inputs past the last entry take the last.
        bits: Bits per entry (LUT Descriptor, third value): 8 or 10-16.
        entries: The LUT Data, unsigned integers below ``2**bits``.
    """

    first_mapped: int
    bits: int
    entries: Sequence[int]

    def item(self) -> Dataset:
        """The LUT as a sequence item (LUTDescriptor US, LUTData US)."""
        item = Dataset()
        item.add_new(0x00283002, "US", [len(self.entries), self.first_mapped, self.bits])
        item.add_new(0x00283006, "US", [int(v) for v in self.entries])
        return item


def dicom_bytes(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    rescale_slope: float | None = None,
    rescale_intercept: float | None = None,
    window_center: float | Sequence[float] | None = None,
    window_width: float | Sequence[float] | None = None,
    voi_function: str | None = None,
    voi_lut: Lut | Sequence[Lut] | None = None,
    modality_lut: Lut | None = None,
    frames: int | None = None,
    burned_in: bool | None = None,
    modality: str = "CR",
    patient_id: str | None = None,
    patient_name: str | None = None,
    extra: dict[str, object] | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
) -> bytes:
    """A DICOM Part 10 file holding ``pixels``, as bytes.

    Args:
        pixels: Integer samples: ``(rows, columns)`` greyscale or palette,
            ``(rows, columns, 3)`` colour; with ``frames``, a leading frame
            axis. The dtype sets BitsAllocated (8, 16 or 32) and
            PixelRepresentation (signed dtypes: 1).
        photometric: PhotometricInterpretation (``MONOCHROME1``,
            ``MONOCHROME2``, ``RGB``, ``YBR_FULL``...); the samples are
            written as given (convert colour yourself for ``YBR_*``).
        bits_stored: BitsStored (default: all the dtype's bits).
        rescale_slope: RescaleSlope; with ``rescale_intercept``, the two
            are written together (the other defaults to 1 or 0).
        rescale_intercept: RescaleIntercept.
        window_center: WindowCenter, one value or several (multi-valued).
        window_width: WindowWidth, as many values as ``window_center``.
        voi_function: VOILUTFunction (``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID``).
        voi_lut: The VOI LUT Sequence's item(s).
        modality_lut: The Modality LUT Sequence's item (with ModalityLUTType ``US``).
        frames: NumberOfFrames: ``pixels`` has a leading axis of that length.
        burned_in: BurnedInAnnotation ``YES`` (True) or ``NO`` (False); absent
            when None.
        modality: Modality; CR, DX, CT and MR get their SOP class, anything
            else Secondary Capture.
        patient_id: PatientID, when given.
        patient_name: PatientName, when given.
        extra: More attributes by keyword (``{"StudyDate": "20240101"}``);
            written last, so they may override any of the above.
        transfer_syntax: One of :data:`UNCOMPRESSED`, or RLE Lossless (encoded
            by pydicom).

    Returns:
        The file's bytes (preamble, ``DICM``, File Meta Information, data set).
    """
    array = np.asarray(pixels)
    big_endian = transfer_syntax == ExplicitVRBigEndian  # set_pixel_data writes little-endian
    dataset = _dataset(modality, ExplicitVRLittleEndian if big_endian else transfer_syntax)
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    if frames is not None and array.shape[0] != frames:
        raise ValueError(f"pixels has {array.shape[0]} frames, not {frames}")
    bits = bits_stored or 8 * array.dtype.itemsize
    if frames is None or frames > 1:
        dataset.set_pixel_data(array, photometric, bits, generate_instance_uid=False)
    else:  # one frame given with its frame axis: drop it, keep NumberOfFrames = 1
        dataset.set_pixel_data(array[0], photometric, bits, generate_instance_uid=False)
    if frames is not None:
        dataset.NumberOfFrames = frames
    if colour:
        dataset.PlanarConfiguration = 0
    if rescale_slope is not None or rescale_intercept is not None:
        dataset.RescaleSlope = 1 if rescale_slope is None else rescale_slope
        dataset.RescaleIntercept = 0 if rescale_intercept is None else rescale_intercept
        dataset.RescaleType = "US"
    if window_center is not None:
        dataset.WindowCenter = window_center
    if window_width is not None:
        dataset.WindowWidth = window_width
    if voi_function is not None:
        dataset.VOILUTFunction = voi_function
    if voi_lut is not None:
        luts = [voi_lut] if isinstance(voi_lut, Lut) else list(voi_lut)
        dataset.VOILUTSequence = [lut.item() for lut in luts]
    if modality_lut is not None:
        item = modality_lut.item()
        item.ModalityLUTType = "US"
        dataset.ModalityLUTSequence = [item]
    if burned_in is not None:
        dataset.BurnedInAnnotation = "YES" if burned_in else "NO"
    if patient_id is not None:
        dataset.PatientID = patient_id
    if patient_name is not None:
        dataset.PatientName = patient_name
    for keyword, value in (extra or {}).items():
        setattr(dataset, keyword, value)
    if big_endian:
        dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        dataset.PixelData = array.astype(array.dtype.newbyteorder(">")).tobytes()
    if transfer_syntax == RLELossless:
        dataset.compress(RLELossless, generate_instance_uid=False)
    elif transfer_syntax not in UNCOMPRESSED:
        raise ValueError(f"cannot encode {transfer_syntax.name}: use relabelled()")
    return _written(dataset)


def dicom_without_pixels(
    *, modality: str = "SR", patient_name: str | None = None, extra: dict | None = None
) -> bytes:
    """A DICOM Part 10 file with no PixelData (a structured report, say).

    Args:
        modality: Modality: ``SR`` (Basic Text SR), ``PR`` (Grayscale Softcopy
            Presentation State); others get an image SOP class, as a file
            whose pixel data was lost would.
        patient_name: PatientName, when given.
        extra: More attributes by keyword (e.g. ``{"FloatPixelData": b"..."}``).

    Returns:
        The file's bytes.
    """
    dataset = _dataset(modality, ExplicitVRLittleEndian, _NO_PIXELS.get(modality))
    if patient_name is not None:
        dataset.PatientName = patient_name
    for keyword, value in (extra or {}).items():
        setattr(dataset, keyword, value)
    return _written(dataset)


def relabelled(data: bytes, transfer_syntax: UID, fragments: Sequence[bytes] = ()) -> bytes:
    """The same file claiming another transfer syntax, pixels not re-encoded.

    For refusal tests (a transfer syntax no codec decodes, a corrupt
    compressed stream): a compressed ``transfer_syntax`` gets encapsulated
    PixelData made of ``fragments`` (one per frame; default: each frame's
    stored bytes, which are no valid compressed stream).

    Args:
        data: A DICOM file's bytes.
        transfer_syntax: The TransferSyntaxUID to write.
        fragments: Encapsulated frames, for a compressed transfer syntax.

    Returns:
        The file's bytes.
    """
    dataset = pydicom.dcmread(io.BytesIO(data))
    if UID(transfer_syntax).is_compressed:
        raw = dataset.PixelData
        frames = int(dataset.get("NumberOfFrames") or 1)
        size = len(raw) // frames
        chunks = list(fragments) or [raw[i * size : (i + 1) * size] for i in range(frames)]
        dataset.PixelData = encapsulate(chunks)
        dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = transfer_syntax
    return _written(dataset)


def sample_path(name: str) -> Path:
    """Path of a DICOM file shipped with pydicom (``CT_small.dcm``, ``dicomdirtests/...``).

    Raises:
        FileNotFoundError: pydicom ships no such file.
    """
    if "/" in name:  # a file under a folder of pydicom's test files
        path = Path(get_testdata_file("CT_small.dcm")).parent / name
    else:
        found = get_testdata_file(name)
        path = Path(found) if found else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"pydicom ships no test file {name}")
    return path


def sample(name: str) -> bytes:
    """Bytes of a DICOM file shipped with pydicom (see :func:`sample_path`)."""
    return sample_path(name).read_bytes()


def _dataset(modality: str, transfer_syntax: UID, sop_class: UID | None = None) -> Dataset:
    sop_class = sop_class or _SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    instance = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = transfer_syntax
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = instance
    dataset.Modality = modality
    return dataset


def _written(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
