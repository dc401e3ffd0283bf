"""Models equivalent, field for field, to TARS' own service models (py-tars
``tars-core`` at 7c0fb76: names, types, defaults, bounds and ``extra="forbid"``
as there), written here so the tests need nothing outside this repository.
The library must fit whatever the manager holds to these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LLMWorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    llm_provider: Literal["openai", "anthropic", "ollama"] = "openai"
    llm_timeout_sec: float = Field(default=30.0, ge=1.0, le=120.0)
    openai_api_key: str | None = Field(default=None, min_length=10)
    openai_model: str = Field(default="gpt-4o-mini", min_length=1, max_length=100)
    rag_enabled: bool = True


class MemoryWorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    character_dir: str = Field(default="/config/characters", min_length=1, max_length=500)
    character_name: str = Field(default="TARS", min_length=1, max_length=50)
    embed_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2", min_length=1, max_length=200
    )
    memory_dir: str = Field(default="/data/memory", min_length=1, max_length=500)
    memory_file: str = Field(
        default="memory.pickle.gz", min_length=1, max_length=255, pattern="^[\\w\\-\\.]+$"
    )
    memory_top_k: int = Field(default=5, ge=1, le=20)
    rag_strategy: Literal["hybrid", "semantic", "keyword"] = "hybrid"


class RouterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    router_live_mode_default: bool = False
    router_live_mode_enter_phrase: str = Field(
        default="enter live mode", min_length=1, max_length=100
    )
    router_live_mode_exit_phrase: str = Field(
        default="exit live mode", min_length=1, max_length=100
    )
    router_llm_tts_stream: bool = True
    router_stream_boundary_only: bool = True
    router_stream_boundary_regex: str = Field(
        default="[.!?…]+[\\\"')\\\\]]?\\\\s", min_length=1, max_length=200
    )
    router_stream_max_chars: int = Field(default=200, ge=1, le=1000)
    router_stream_min_chars: int = Field(default=30, ge=1, le=500)
    router_wake_ack_choices: str = Field(default="Hmm?|Huh?|Yes?", min_length=0, max_length=500)
    router_wake_ack_enabled: bool = True
    router_wake_ack_text: str = Field(default="Yes?", min_length=0, max_length=100)
    router_wake_window_sec: float = Field(default=8.0, ge=1.0, le=60.0)


class STTWorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: int = Field(default=1, ge=1, le=2)
    sample_rate: int = Field(default=16000, gt=0)
    streaming_partials: bool = False
    stt_backend: Literal["whisper", "ws", "openai"] = "whisper"
    vad_silence_duration_ms: int = Field(default=500, ge=0, le=2000)
    vad_speech_pad_ms: int = Field(default=300, ge=0, le=1000)
    vad_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    whisper_model: Literal[
        "tiny",
        "tiny.en",
        "base",
        "base.en",
        "small",
        "small.en",
        "medium",
        "medium.en",
        "large",
        "large-v2",
        "large-v3",
    ] = "base.en"
    ws_url: str | None = Field(default=None, pattern="^wss?://[^\\s]+$")


class TTSWorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    eleven_api_base: str = Field(
        default="https://api.elevenlabs.io/v1", min_length=1, max_length=500
    )
    eleven_api_key: str = Field(default="", max_length=500)
    eleven_model_id: str = Field(default="eleven_multilingual_v2", min_length=1, max_length=100)
    eleven_optimize_streaming: int = Field(default=0, ge=0, le=3)
    eleven_voice_id: str = Field(default="", max_length=200)
    piper_voice: str = Field(default="en_US-lessac-medium", min_length=1, max_length=200)
    tts_aggregate: bool = True
    tts_aggregate_by_utt: bool = True
    tts_aggregate_debounce_ms: int = Field(default=150, ge=0, le=5000)
    tts_aggregate_single_wav: bool = True
    tts_aggregate_timeout_sec: float = Field(default=2.0, ge=0.1, le=10.0)
    tts_concurrency: int = Field(default=1, ge=1, le=10)
    tts_pipeline: bool = True
    tts_provider: str = Field(default="piper", min_length=1, max_length=50)
    tts_simpleaudio: bool = False
    tts_streaming: bool = False
    tts_wake_cache_dir: str = Field(default="data/tts-cache", min_length=1, max_length=500)
    tts_wake_cache_enable: bool = True
    tts_wake_cache_max: int = Field(default=16, ge=0, le=1000)
    volume_percent: int = Field(default=100, ge=0, le=200)


class WakeActivationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wake_detection_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    wake_energy_boost_factor: float = Field(default=1.2, ge=0.5, le=3.0)
    wake_min_retrigger_sec: float = Field(default=0.8, ge=0.1, le=5.0)
    wake_model_path: str = Field(
        default="/models/openwakeword/hey_tars.tflite", min_length=1, max_length=500
    )
    wake_speex_noise_suppression: bool = True
    wake_vad_threshold: float = Field(default=0.3, ge=0.0, le=1.0)


#: Service name at the manager → TARS' model.
MODELS: dict[str, type[BaseModel]] = {
    "llm-worker": LLMWorkerConfig,
    "memory-worker": MemoryWorkerConfig,
    "router": RouterConfig,
    "stt-worker": STTWorkerConfig,
    "tts-worker": TTSWorkerConfig,
    "wake-activation": WakeActivationConfig,
}
