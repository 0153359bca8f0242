"""Frozen speech SSL teachers: transformers models and original fairseq / unilm / s3prl checkpoints."""

from armdistill.teachers.convert import load_original
from armdistill.teachers.teacher import Teacher, TeacherOutput
from armdistill.teachers.tiny import make_base_model, make_random_model, make_random_teacher

__all__ = ["Teacher", "TeacherOutput", "load_original", "make_base_model", "make_random_model", "make_random_teacher"]
