"""Pure builders of Istio's control-plane components, shared by every profile.

Each module builds one component's objects from a :class:`~.context.Ctx`; profiles
(``render/profiles``) choose which builders a version family uses and with what data.
"""
