"""DICOM files full of identity, built with pydicom, for the de-identification tests.

Each file carries what a hospital export carries: the patient's name, id, birth
date and other ids, the accession number, institution, physicians, dates,
free-text descriptions, a private tag, an overlay with a description and a
retired curve. :func:`identity_values` lists every such value, so a test can
search for each one wherever Clearsight writes.
"""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DIGITAL_XRAY = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def identity(patient: int) -> dict[str, str]:
    """The identifying values of one patient (each distinct, at least 8 characters)."""
    return {
        "PatientName": f"Quintavalle^Rosalind{patient:03d}",
        "PatientID": f"MRN-7731-{patient:04d}",
        "PatientBirthDate": f"1961{patient % 12 + 1:02d}{patient % 27 + 1:02d}",
        "AccessionNumber": f"ACC99{patient:05d}",
        "InstitutionName": f"Saint Bartholomew Clinic {patient}",
        "InstitutionAddress": f"{patient} Harley Street, London",
        "ReferringPhysicianName": f"Okonkwo^Adaeze{patient:03d}",
        "OperatorsName": f"Lindqvist^Henrik{patient:03d}",
        "StudyDate": f"2019{patient % 12 + 1:02d}{patient % 27 + 2:02d}",
        "StudyDescription": f"Chest PA for persistent cough, patient {patient} smoker",
        "SeriesDescription": f"Follow-up series of Rosalind {patient:03d}",
        "ImageComments": f"Compared with the 2017 film of Mrs Quintavalle {patient:03d}",
        "OtherPatientID": f"NHS-448-{patient:05d}",
        "PrivateName": f"Private note: Rosalind Quintavalle{patient:03d}",
        "OverlayDescription": f"Marker placed by Dr Okonkwo {patient:03d}",
        "CurveDescription": f"Curve drawn for Quintavalle {patient:03d}",
        "WindowExplanation": f"Window chosen by Lindqvist {patient:03d}",
    }


def identity_values(patient: int) -> list[str]:
    """Every identifying value of :func:`identity` (the strings to search for)."""
    return list(identity(patient).values())


def identified_dicom(
    pixels: np.ndarray,
    patient: int | None,
    *,
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    rle: bool = False,
    burned_in: bool = False,
) -> bytes:
    """A DICOM Part 10 file of ``pixels`` whose every field names ``patient``.

    Args:
        pixels: ``uint8`` or ``uint16`` array ``(rows, columns)``, greyscale.
        patient: Whose identity to write (:func:`identity`); None: no patient
            attributes at all (no PatientID).
        bits_stored: Bits Stored (default: the dtype's bits).
        window: ``(center, width)`` to write, with an explanation naming someone.
        rle: Compress the pixel data with RLE Lossless (encapsulated).
        burned_in: ``BurnedInAnnotation = YES``.

    Returns:
        The file's bytes.
    """
    bits = pixels.dtype.itemsize * 8
    ds = Dataset()
    ds.SOPClassUID = DIGITAL_XRAY
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.SpecificCharacterSet = "ISO_IR 100"
    if patient is not None:
        who = identity(patient)
        for keyword in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
            "InstitutionName",
            "InstitutionAddress",
            "ReferringPhysicianName",
            "OperatorsName",
            "StudyDate",
            "StudyDescription",
            "SeriesDescription",
            "ImageComments",
        ):
            setattr(ds, keyword, who[keyword])
        other = Dataset()
        other.PatientID = who["OtherPatientID"]
        other.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence = Sequence([other])
        block = ds.private_block(0x0011, "ACME HOSPITAL NOTES", create=True)
        block.add_new(0x01, "LO", who["PrivateName"])
        ds.add_new(0x60000010, "US", pixels.shape[0])  # overlay rows
        ds.add_new(0x60000011, "US", pixels.shape[1])  # overlay columns
        ds.add_new(0x60000040, "CS", "G")  # overlay type
        ds.add_new(0x60000050, "SS", [1, 1])  # overlay origin
        ds.add_new(0x60000100, "US", 1)  # overlay bits allocated
        ds.add_new(0x60000102, "US", 0)  # overlay bit position
        ds.add_new(0x60000022, "LO", who["OverlayDescription"])
        ds.add_new(0x60003000, "OW", bytes((pixels.shape[0] * pixels.shape[1] + 7) // 8))
        ds.add_new(0x50000022, "LO", who["CurveDescription"])  # retired curve module
        if window is not None:
            ds.WindowCenterWidthExplanation = who["WindowExplanation"]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    ds.PixelData = np.ascontiguousarray(pixels).astype(f"<u{bits // 8}").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "ST_BARTS_PACS"
    if rle:
        ds.compress(RLELossless)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def xray(seed: int, size: int = 64, bits_stored: int = 12) -> np.ndarray:
    """A distinct ``uint16`` picture per seed: a coarse random pattern (no two are
    near-duplicates) under a chest-like shading, within ``bits_stored`` bits."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((8, 8))
    pattern = np.kron(coarse, np.ones((size // 8, size // 8)))
    x = np.mgrid[0:size, 0:size][1] / size
    picture = 0.25 + 0.5 * pattern + 0.2 * np.cos((x - 0.5) * np.pi)
    picture += 0.02 * rng.standard_normal((size, size))
    top = 2**bits_stored - 1
    return np.clip(picture / 1.2 * top, 0, top).astype(np.uint16)
