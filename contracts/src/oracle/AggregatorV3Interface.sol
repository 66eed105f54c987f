// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

/// @title AggregatorV3Interface
/// @notice The read interface every Chainlink data feed exposes, written from its published ABI
///         (the chainlink contracts package 1.5.0, `src/v0.8/shared/interfaces/AggregatorV3Interface.sol`;
///         that package does not `npm install` here). The oracle's on-chain adapter reads any feed
///         through exactly these five functions, so the same code reads a real feed given its address.
interface AggregatorV3Interface {
    function decimals() external view returns (uint8);

    function description() external view returns (string memory);

    function version() external view returns (uint256);

    function getRoundData(uint80 _roundId)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
