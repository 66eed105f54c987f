// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AggregatorV3Interface} from "./AggregatorV3Interface.sol";

/// @title HxPriceAggregator
/// @notice A local price feed behind the Chainlink read interface: its transmitter submits one answer
///         per round; anyone reads rounds exactly as from a Chainlink feed (round ids from 1, each
///         round answered in itself, `updatedAt` the block time of the submission). For the local
///         chain and tests; production points the oracle at a real feed's address instead.
/// @dev Invariants: round ids are consecutive from 1; a stored round never changes; only the
///      transmitter writes; answers are positive (a price feed); `latestRoundData` reverts before the
///      first round, as `getRoundData` does for an unknown round ("No data present", Chainlink's reason).
contract HxPriceAggregator is AggregatorV3Interface {
    struct Round {
        int256 answer;
        uint64 startedAt;
        uint64 updatedAt;
    }

    uint8 public immutable override decimals;
    uint256 public constant override version = 4;
    address public immutable transmitter;
    string private _description;
    uint80 public latestRound;
    mapping(uint80 => Round) private _rounds;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    error NotTransmitter(address caller);
    error NonPositiveAnswer(int256 answer);

    constructor(uint8 decimals_, string memory description_, address transmitter_) {
        decimals = decimals_;
        _description = description_;
        transmitter = transmitter_;
    }

    function description() external view override returns (string memory) {
        return _description;
    }

    /// @notice Start and answer the next round.
    function submit(int256 answer) external returns (uint80 roundId) {
        if (msg.sender != transmitter) revert NotTransmitter(msg.sender);
        if (answer <= 0) revert NonPositiveAnswer(answer);
        roundId = latestRound + 1;
        latestRound = roundId;
        _rounds[roundId] = Round(answer, uint64(block.timestamp), uint64(block.timestamp));
        emit NewRound(roundId, msg.sender, block.timestamp);
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    function getRoundData(uint80 _roundId)
        public
        view
        override
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        Round memory r = _rounds[_roundId];
        require(r.updatedAt != 0, "No data present");
        return (_roundId, r.answer, r.startedAt, r.updatedAt, _roundId);
    }

    function latestRoundData()
        external
        view
        override
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRound);
    }
}
